"""What the deployment tests share: a Dagster instance database on the local PostgreSQL server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import sqlalchemy as sa

from kpi_pipeline_tests.postgres import POSTGRES_ENV


@contextmanager
def instance_database() -> Iterator[dict[str, str]]:
    """A new PostgreSQL database for the Dagster instance (dropped afterwards), as the
    ``DAGSTER_PG_*`` variables deploy/dagster.yaml reads."""
    url = sa.make_url(os.environ[POSTGRES_ENV])
    name = f"kpi_deploy_{uuid.uuid4().hex[:10]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {
            "DAGSTER_PG_HOST": url.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(url.port or 5432),
            "DAGSTER_PG_USER": url.username or "postgres",
            "DAGSTER_PG_PASSWORD": url.password or "",
            "DAGSTER_PG_DB": name,
        }
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
