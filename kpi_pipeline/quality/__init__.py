"""Data-quality checks: pure functions that judge staged data and KPI tables."""
