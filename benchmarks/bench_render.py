"""CPU per one-page invoice: the invoice template against the older ones, side by side.

    .venv/bin/python benchmarks/bench_render.py [--rounds 40] [--warmup 5]

Variants, all rendering the same invoice (the unit tests' three-line invoice with a tiered
line) in one process with the same font configuration and fetcher:

* ``baseline``: ``benchmarks/baseline/`` -- the template the issue measured (~143 ms then);
  the target is ``new`` at <= 0.56x of it.
* ``previous``: ``benchmarks/baseline/previous/`` -- the first lean layout (0.83x).
* ``new``: ``billing_pipeline/rendering``, rendered by ``render_invoice_pdf`` itself (the code
  path of the delivery job's pdf op).
* ``new_uncompressed``: the same with WeasyPrint's ``uncompressed_pdf`` option (not used in
  production: measured for the CPU it saves against the bytes it costs).

Renders alternate (baseline, previous, new, ... per round) after a warm-up, each timed with
``time.process_time``. Prints JSON: median (and quartiles) CPU ms per invoice of each, the
ratios to the baseline, page counts, PDF sizes, and the load average around the run (the
machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

BASELINE = Path(__file__).parent / "baseline"


def baseline_renderer(folder: Path = BASELINE):
    """An older template + stylesheet (which set the PDF metadata with <meta> elements), laid out
    with the same fetcher and font configuration as ``html_to_pdf``."""
    import jinja2
    from weasyprint import CSS, HTML

    from billing_pipeline.rendering import pdf
    from billing_pipeline.rendering.context import ASSETS_DIR, environment, invoice_view

    template = environment().overlay(loader=jinja2.FileSystemLoader(str(folder))).get_template("invoice.html.j2")
    font_config = pdf._font_config()  # noqa: SLF001 - the same (cached) font configuration as the new path
    css = CSS(filename=str(folder / "invoice.css"), url_fetcher=pdf.safe_fetcher, font_config=font_config)

    def render(invoice, org, seller) -> bytes:
        html = template.render(created=pdf._w3c(invoice.issued_at), **invoice_view(invoice, org, seller))  # noqa: SLF001
        document = HTML(string=html, base_url=ASSETS_DIR.as_uri() + "/", url_fetcher=pdf.safe_fetcher)
        return document.write_pdf(stylesheets=[css], font_config=font_config, pdf_identifier=False)

    return render


def uncompressed_renderer():
    """``render_invoice_pdf`` with WeasyPrint's ``uncompressed_pdf`` option."""
    from billing_pipeline.rendering import pdf

    def render(invoice, org, seller) -> bytes:
        html = pdf.render_invoice_html(invoice, org, seller)
        metadata = pdf.invoice_metadata(invoice, org, seller)
        return pdf.html_to_pdf(html, metadata=metadata, write_options={"uncompressed_pdf": True})

    return render


def _ms(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(values, n=4)
    return {
        "median": round(statistics.median(values) * 1000, 1),
        "q1": round(q[0] * 1000, 1),
        "q3": round(q[2] * 1000, 1),
    }


def _pages(pdf: bytes) -> int | None:
    """Page count by pdfinfo (poppler-utils), None without it."""
    try:
        info = subprocess.run(["pdfinfo", "-"], input=pdf, capture_output=True, check=True).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        return None
    return next((int(line.split()[1]) for line in info.splitlines() if line.startswith("Pages:")), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()

    from billing_pipeline.rendering.pdf import render_invoice_pdf
    from billing_pipeline_tests.unit.test_rendering import SELLER, make_invoice, make_org

    invoice, org = make_invoice(), make_org()
    variants = {
        "baseline": baseline_renderer(),
        "previous": baseline_renderer(BASELINE / "previous"),
        "new": render_invoice_pdf,
        "new_uncompressed": uncompressed_renderer(),
    }
    outputs = {}
    for name, render in variants.items():
        for _ in range(args.warmup):
            outputs[name] = render(invoice, org, SELLER)
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, render in variants.items():  # A B A B ...
            t = time.process_time()
            out = render(invoice, org, SELLER)
            times[name].append(time.process_time() - t)
            if out != outputs[name]:
                raise SystemExit(f"{name}: a re-render gave different bytes")
    result = {
        "rounds": args.rounds,
        "cpu_ms_per_invoice": {name: _ms(v) for name, v in times.items()},
        "pages": {name: _pages(out) for name, out in outputs.items()},
        "pdf_bytes": {name: len(out) for name, out in outputs.items()},
        "load_average_1m": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }
    medians = {name: ms["median"] for name, ms in result["cpu_ms_per_invoice"].items()}
    result["ratio_to_baseline"] = {name: round(m / medians["baseline"], 3) for name, m in medians.items()}
    result["target_ratio"] = 0.56  # issue 10: <= 80 ms where the baseline took ~143 ms
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
