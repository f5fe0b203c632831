"""Reading raw exports and turning them into staged rows plus a quarantine."""
