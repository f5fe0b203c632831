-- The KPI warehouse beside the Dagster instance's database, on the same server.
CREATE DATABASE warehouse;
