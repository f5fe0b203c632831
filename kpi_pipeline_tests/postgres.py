"""The local PostgreSQL server of the warehouse tests: its URL from ``KPI_TEST_POSTGRES_URL``, and a
fresh schema per test (dropped afterwards), so tests never see each other's tables."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

import kpi_pipeline.warehouse as warehouse_module

POSTGRES_ENV = "KPI_TEST_POSTGRES_URL"
POSTGRES_SKIP_REASON = "KPI_TEST_POSTGRES_URL is not set; export it to run the PostgreSQL warehouse tests"


@contextmanager
def postgres_schema_url() -> Iterator[str]:
    """The PostgreSQL URL of a new schema (first on the search_path), dropped with its contents afterwards."""
    base = sa.make_url(os.environ[POSTGRES_ENV])
    schema = f"kpi_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    scoped = base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )
    try:
        yield scoped
    finally:
        warehouse_module.engine_for(scoped).dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()
