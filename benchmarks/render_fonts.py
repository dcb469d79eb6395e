"""CPU per one-page invoice render, for a Latin name and a CJK + emoji name (fonts before/after).

    .venv/bin/python benchmarks/render_fonts.py [--renders 30]

Prints JSON: the process CPU for the imports and a first render (font discovery is paid
there), then per name the CPU of its first render (its fonts loaded) and the median of the
following renders, in one process. Run it
before and after installing fonts (scripts/bootstrap.sh); the README records both.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

NAMES = {"latin": "Acme Analytics", "cjk_emoji": "株式会社テスト 🦄 Emoji Co"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--renders", type=int, default=30)
    args = parser.parse_args()
    start = time.process_time()
    from billing_pipeline.rendering.pdf import render_invoice_pdf
    from billing_pipeline_tests.unit.test_rendering import SELLER, make_invoice, make_org

    invoice = make_invoice()
    render_invoice_pdf(invoice, make_org(NAMES["latin"]), SELLER)
    first = time.process_time() - start
    result: dict[str, object] = {"imports_and_first_render_cpu_ms": round(first * 1000, 1)}
    for key, name in NAMES.items():
        org = make_org(name)
        t = time.process_time()
        render_invoice_pdf(invoice, org, SELLER)  # this name's fonts are loaded here
        result[f"{key}_first_cpu_ms"] = round((time.process_time() - t) * 1000, 1)
        times = []
        for _ in range(args.renders):
            t = time.process_time()
            render_invoice_pdf(invoice, org, SELLER)
            times.append(time.process_time() - t)
        result[f"{key}_median_cpu_ms"] = round(statistics.median(times) * 1000, 1)
    fonts = subprocess.run(["fc-list", ":", "family"], capture_output=True, text=True).stdout.splitlines()
    result["fontconfig_families"] = len(set(fonts))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
