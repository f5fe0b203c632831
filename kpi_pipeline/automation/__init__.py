"""What the sensors and the staleness observation need: file states, cursors, data versions."""
