"""Dagster definitions: a thin layer that wires the pure ingest and KPI functions."""
