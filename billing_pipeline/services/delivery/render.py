"""PDF rendering for the pdf step: in worker processes that write each PDF to the spool.

The workers write the file themselves and hand back only its SHA-256, so PDF bytes never
cross the process boundary or reach Dagster.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from billing_pipeline.clients.files import write_replacing
from billing_pipeline.domain.model import Invoice, Organization
from billing_pipeline.rendering.seller import Seller

Render = Callable[[Invoice, Organization, Seller], bytes]
Job = tuple[Render, Invoice, Organization, Seller, str | None]


def render_invoice_pdf(invoice: Invoice, org: Organization, seller: Seller) -> bytes:
    """``rendering.pdf.render_invoice_pdf``, imported on first use: a process that only does
    network steps never loads WeasyPrint."""
    from billing_pipeline.rendering.pdf import render_invoice_pdf as render

    return render(invoice, org, seller)


def render_job(render: Render, invoice: Invoice, org: Organization, seller: Seller) -> bytes:
    return render(invoice, org, seller)


def render_to_file(
    render: Render, invoice: Invoice, org: Organization, seller: Seller, path: str | None
) -> tuple[str | None, str | None]:
    """Render one PDF and write it to ``path`` (None: validate only): (sha256, None) or (None, error)."""
    try:
        data = render(invoice, org, seller)
        if not data.startswith(b"%PDF"):
            raise ValueError("renderer returned something that is not a PDF")
        if path is not None:
            write_replacing(Path(path), data)
    except Exception as exc:  # noqa: BLE001 - one invoice's PDF never stops the others
        return None, f"{type(exc).__name__}: {exc}"
    return hashlib.sha256(data).hexdigest(), None


def warm_up() -> None:
    import billing_pipeline.rendering.pdf  # noqa: F401 - pay WeasyPrint's import once per worker


@contextlib.contextmanager
def render_pool(workers: int) -> Iterator[concurrent.futures.Executor | None]:
    """A process pool (spawned: safe inside threaded hosts such as Dagster), or None for 0."""
    if workers <= 0:
        yield None
        return
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=warm_up
    )
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def render_all(
    jobs: Sequence[Job], pool: concurrent.futures.Executor | None
) -> Iterator[tuple[str | None, str | None]]:
    """``render_to_file`` for every job, results in order (streamed as workers finish them)."""
    if pool is None or len(jobs) < 2:
        for job in jobs:
            yield render_to_file(*job)
        return
    yield from pool.map(render_to_file, *zip(*jobs, strict=True), chunksize=2)
