"""Invoice -> HTML -> PDF bytes with WeasyPrint 70.

* One jinja2 Environment (autoescape, StrictUndefined) and one parsed ``invoice.css`` are
  reused across calls; steady state is ~40 ms of CPU per one-page invoice on the shared 2-core
  machine (README "Benchmarks"; needs ``libharfbuzz-subset0`` for font subsetting, several
  times slower without it).
* Resources are fetched only through ``SafeAssetFetcher``: files under
  ``rendering/assets/`` and nothing else (no http(s), no other file, no data: URLs). A refused
  URL raises inside the fetcher; WeasyPrint logs a warning and renders without it.
* The cached WeasyPrint objects (font configuration, parsed stylesheet) hold Pango/fontconfig
  objects that cffi frees with ``g_object_unref`` when they are collected. Left to interpreter
  finalization, that happens after the libraries' own state is torn down and the process
  segfaults at exit (exit 139 after successful work; compare WeasyPrint issue #2843), so they
  are released by an ``atexit`` hook while everything is still alive (``release_cached_objects``).
* Output is deterministic: no PDF /ID, title = invoice number, creation/modification date =
  ``invoice.issued_at`` (absent for drafts), so re-rendering the same invoice yields the same
  bytes and the same sha256. Author, subject, generator and dates are set on the rendered
  ``Document.metadata`` (public WeasyPrint API) rather than by ``<meta>`` elements: every element
  costs style and box work, even one that is not displayed.
"""

from __future__ import annotations

import atexit
import datetime as dt
import gc
import mimetypes
import threading
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from weasyprint import CSS, HTML
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import URLFetcher, URLFetcherResponse

from billing_pipeline.domain.model import Invoice, Organization
from billing_pipeline.rendering.context import ASSETS_DIR, environment, invoice_view
from billing_pipeline.rendering.seller import Seller

__all__ = [
    "AssetRefused",
    "SafeAssetFetcher",
    "safe_fetcher",
    "render_invoice_html",
    "render_invoice_pdf",
    "html_to_pdf",
    "invoice_metadata",
]

INVOICE_TEMPLATE = "invoice.html.j2"
STYLESHEET = "invoice.css"


class AssetRefused(ValueError):
    """A document asked for a resource outside ``rendering/assets/``."""


class SafeAssetFetcher(URLFetcher):
    """WeasyPrint fetcher that serves regular files under one directory and refuses all else.

    WeasyPrint 70 calls ``fetcher(url)`` and reads ``fetcher._fail_on_errors`` when it
    raises, so this must be a ``URLFetcher`` subclass (a bare function no longer works).
    Any exception raised here is turned by WeasyPrint into a logged warning and the
    resource is skipped; ``fail_on_errors`` stays False so a refused URL never aborts a render.
    """

    def __init__(self, root: Path = ASSETS_DIR) -> None:
        super().__init__(allowed_protocols=("file",), allow_redirects=False, fail_on_errors=False)
        self.root = Path(root).resolve()

    def resolve(self, url: str) -> Path:
        """The file ``url`` names, or ``AssetRefused``."""
        parts = urlsplit(url)
        if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
            raise AssetRefused(f"refused non-asset URL: {url[:200]!r}")
        path = Path(url2pathname(parts.path))
        try:
            real = path.resolve(strict=True)  # follows symlinks: a link out of root is refused
        except (OSError, RuntimeError):
            raise AssetRefused(f"refused missing asset: {url[:200]!r}") from None
        if not real.is_relative_to(self.root) or not real.is_file():
            raise AssetRefused(f"refused URL outside the assets directory: {url[:200]!r}")
        return real

    def fetch(self, url: str, headers: dict | None = None) -> URLFetcherResponse:
        path = self.resolve(url)
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return URLFetcherResponse(path.as_uri(), path.read_bytes(), {"Content-Type": content_type})


#: The fetcher used for every render.
safe_fetcher = SafeAssetFetcher()

_lock = threading.Lock()


@lru_cache(maxsize=1)
def _font_config() -> FontConfiguration:
    return FontConfiguration()


@lru_cache(maxsize=1)
def _stylesheet() -> CSS:
    with _lock:
        return CSS(
            filename=str(ASSETS_DIR / STYLESHEET),
            url_fetcher=safe_fetcher,
            font_config=_font_config(),
        )


@atexit.register
def release_cached_objects() -> None:
    """Drop the cached stylesheet and font configuration and collect them now, not at finalization."""
    with _lock:
        _stylesheet.cache_clear()
        _font_config.cache_clear()
    gc.collect()


def w3c_date(ts: dt.datetime | None) -> str | None:
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_invoice_html(invoice: Invoice, org: Organization, seller: Seller) -> str:
    """The invoice as a standalone HTML document (autoescaped; no external references)."""
    template = environment().get_template(INVOICE_TEMPLATE)
    return template.render(**invoice_view(invoice, org, seller))


def html_to_pdf(
    html: str,
    *,
    url_fetcher: URLFetcher | None = None,
    metadata: dict | None = None,
    write_options: dict | None = None,
) -> bytes:
    """Lay out ``html`` with the invoice stylesheet. Relative URLs resolve against assets/.

    ``metadata``: ``DocumentMetadata`` attributes (authors, description, generator, created,
    modified) set on the rendered document before it is written; ``write_options``: extra
    ``Document.write_pdf`` options (the render benchmark measures ``uncompressed_pdf``)."""
    fetcher = url_fetcher or safe_fetcher
    html_document = HTML(string=html, base_url=ASSETS_DIR.as_uri() + "/", url_fetcher=fetcher)
    document = html_document.render(stylesheets=[_stylesheet()], font_config=_font_config())
    for name, value in (metadata or {}).items():
        setattr(document.metadata, name, value)
    # no /ID: it would differ per render, and the bytes must be stable
    return document.write_pdf(pdf_identifier=False, **(write_options or {}))


def invoice_metadata(invoice: Invoice, org: Organization, seller: Seller) -> dict:
    """The PDF's author, subject, generator and dates (title: the template's <title>)."""
    created = w3c_date(invoice.issued_at)
    return {
        "authors": [seller.name],
        "description": f"Invoice {invoice.number or 'DRAFT'} for {org.name}",  # the template's number
        "generator": "billing_pipeline",
        "created": created,
        "modified": created,
    }


def render_invoice_pdf(
    invoice: Invoice,
    org: Organization,
    seller: Seller,
    *,
    url_fetcher: URLFetcher | None = None,
) -> bytes:
    """PDF bytes of the invoice; identical input gives identical bytes."""
    return html_to_pdf(
        render_invoice_html(invoice, org, seller),
        url_fetcher=url_fetcher,
        metadata=invoice_metadata(invoice, org, seller),
    )
