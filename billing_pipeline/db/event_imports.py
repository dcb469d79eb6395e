"""The ``event_imports`` rows and the reference data an import checks events against.

An import row is ``running`` from its start, its counts grow with every committed batch
(in the batch's transaction, so they are always exactly what is stored), and it ends
``succeeded`` or ``failed`` with the error. A SIGKILLed import stays ``running``;
re-running the file completes it under a new row.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, update

from billing_pipeline.clock import utc_now
from billing_pipeline.db.schema import catalog_versions, event_imports, organizations
from billing_pipeline.domain.catalog import Metric, parse_catalog

UTC = dt.UTC


@dataclass(frozen=True)
class ImportCounts:
    read: int
    accepted: int
    duplicates: int
    quarantined: int


def load_latest_metrics(engine: Engine) -> dict[str, Metric]:
    """The metrics of the newest catalog version (max ``catalog_versions.version``)."""
    with engine.connect() as conn:
        document = conn.execute(
            select(catalog_versions.c.document).order_by(catalog_versions.c.version.desc()).limit(1)
        ).scalar_one_or_none()
    if document is None:
        raise LookupError("no catalog loaded: catalog_versions is empty")
    if isinstance(document, str):
        document = json.loads(document)
    return dict(parse_catalog(document).metrics)


def load_org_ids(engine: Engine) -> frozenset[str]:
    with engine.connect() as conn:
        return frozenset(conn.execute(select(organizations.c.id)).scalars())


def start_import(engine: Engine, source: str, now: dt.datetime) -> int:
    with engine.begin() as conn:
        return conn.execute(
            insert(event_imports)
            .values(source=source, started_at=now, read=0, accepted=0, duplicates=0, quarantined=0, status="running")
            .returning(event_imports.c.id)
        ).scalar_one()


def finish_import(engine: Engine, import_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(event_imports)
            .where(event_imports.c.id == import_id)
            .values(finished_at=utc_now(), status="succeeded")
        )


def fail_import(engine: Engine, import_id: int, error: str) -> ImportCounts:
    """Mark the import failed with ``error``; return the counts it had committed."""
    with engine.begin() as conn:
        conn.execute(
            update(event_imports)
            .where(event_imports.c.id == import_id)
            .values(finished_at=utc_now(), status="failed", error=error)
        )
        c = event_imports.c
        row = conn.execute(select(c.read, c.accepted, c.duplicates, c.quarantined).where(c.id == import_id)).one()
    return ImportCounts(*row)
