"""The database health probe: a new connection (connect + auth), the schema revision read, bounded
by a timeout. Its own engine without a pool, so a probe never reuses a connection that worked
minutes ago; a SQLite file that does not exist is reported, not created."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from billing_pipeline.db.engine import normalize_url

__all__ = ["DatabaseDown", "check_database"]


class DatabaseDown(RuntimeError):
    """The database answered, but is not usable for billing (no file, no schema)."""


def check_database(url: str, timeout: float) -> str:
    """A detail such as ``postgresql 127.0.0.1:5432/billing, schema 0004``; raises when down."""
    parsed = make_url(normalize_url(url))
    seconds = max(1, int(round(timeout)))
    if parsed.drivername.startswith("sqlite"):
        where = parsed.database or ":memory:"
        if where != ":memory:" and not Path(where).is_file():
            raise DatabaseDown(f"SQLite file {where} does not exist (billing-pipeline init-db creates it)")
        connect_args: dict = {"timeout": seconds}
    else:
        where = f"{parsed.host}:{parsed.port or 5432}/{parsed.database}"
        connect_args = {"connect_timeout": seconds}
    engine = create_engine(parsed, poolclass=NullPool, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text(f"SET statement_timeout = {seconds * 1000}"))
            has_schema = engine.dialect.has_table(conn, "alembic_version")
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar() if has_schema else None
    finally:
        engine.dispose()
    if revision is None:
        raise DatabaseDown(f"{engine.dialect.name} {where}: no schema (billing-pipeline init-db)")
    return f"{engine.dialect.name} {where}, schema {revision}"
