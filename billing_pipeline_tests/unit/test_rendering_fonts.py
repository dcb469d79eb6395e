"""Names in any script print: a CJK and an emoji organization name are drawn with Noto fonts.

pdftotext alone cannot tell: WeasyPrint writes the text of a missing glyph into the PDF's
ToUnicode map too, so "株式会社" is extracted even where it prints as empty boxes (measured with
only DejaVu installed). So besides pdftotext and pdffonts, the test reads which font each
text run of the page is drawn with (pypdf) and requires the name's characters to be drawn
with the Noto font that has them (fonts-noto-cjk, fonts-noto-color-emoji: scripts/bootstrap.sh).
"""

from __future__ import annotations

import io
import shutil
import subprocess

import pytest
from pypdf import PdfReader

from billing_pipeline.rendering.pdf import render_invoice_pdf
from billing_pipeline_tests.unit.test_rendering import SELLER, make_invoice, make_org

BOOTSTRAP = "install the fonts with scripts/bootstrap.sh (fonts-noto-cjk, fonts-noto-color-emoji)"


def poppler(tool: str, pdf: bytes) -> str:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} (poppler-utils) not installed")
    return subprocess.run(
        [tool, "-", "-"] if tool == "pdftotext" else [tool, "-"], input=pdf, capture_output=True, check=True
    ).stdout.decode()


def fonts_drawing(pdf: bytes, text: str) -> set[str]:
    """The base fonts of the page-1 text runs that contain ``text``."""
    fonts: set[str] = set()

    def visit(run, _cm, _tm, font, _size):
        if text in run and font is not None:
            fonts.add(str(font.get("/BaseFont")))

    PdfReader(io.BytesIO(pdf)).pages[0].extract_text(visitor_text=visit)
    return fonts


@pytest.mark.parametrize(
    "name, drawn, font",
    [
        ("株式会社イニテック", "株式会社イニテック", "Noto-Sans-CJK"),
        ("Unicorn 🦄 Labs", "🦄", "Noto-Color-Emoji"),
    ],
)
def test_cjk_and_emoji_names_print_with_a_font_that_has_them(name, drawn, font):
    pdf = render_invoice_pdf(make_invoice(), make_org(name), SELLER)
    assert name in poppler("pdftotext", pdf)
    assert font in poppler("pdffonts", pdf), BOOTSTRAP
    used = fonts_drawing(pdf, drawn)
    assert used and all(font in f for f in used), f"{drawn!r} drawn with {used or 'no font'}: {BOOTSTRAP}"
