"""Trend charts for the reports: matplotlib (Agg) -> SVG text, byte-stable, text kept as text.

``svg.fonttype = 'none'`` writes labels as ``<text>`` (pdftotext finds them in the PDF);
``svg.hashsalt`` fixes the generated element ids and ``metadata={'Date': None}`` drops the
timestamp, so the same numbers always give the same bytes (the document store is write-once).
matplotlib is imported on first use (about 3 s), not when the definitions load.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from decimal import Decimal

__all__ = ["trend_svg"]

_lock = threading.Lock()  # pyplot's state is global
_RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "billing_pipeline-reports",
    "font.family": "DejaVu Sans",
    "font.size": 8,
}


def trend_svg(points: Sequence[tuple[str, Decimal]], *, title: str, currency: str, measure: str = "MRR") -> str:
    """A line chart of ``points`` (label, amount), oldest first, as an ``<svg>`` element (no XML prolog);
    the y axis reads ``{measure} ({currency})``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label for label, _ in points]
    values = [float(v) for _, v in points]  # drawing only: the numbers printed come from Decimal
    with _lock, matplotlib.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(7.0, 2.6), dpi=72)
        try:
            ax.plot(range(len(values)), values, marker="o", color="#1f4e79", linewidth=1.5)
            ax.set_title(title)
            ax.set_ylabel(f"{measure} ({currency})")
            ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
            ax.set_ylim(bottom=0, top=max(values + [1.0]) * 1.15)
            ax.grid(axis="y", color="#dddddd", linewidth=0.5)
            fig.tight_layout()
            buf = io.StringIO()
            fig.savefig(buf, format="svg", metadata={"Date": None})
        finally:
            plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]
