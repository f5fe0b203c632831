"""Pure pandas KPI functions: staged frames and config in, KPI tables out."""
