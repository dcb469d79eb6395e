"""Invoice e-mails: multipart/alternative (text + HTML) with the PDF attached.

Header safety: every piece of user data that reaches a header (organization name, seller
name, invoice number, the subject) is first collapsed to one line (CR, LF and every other
line break become a space); display names are quoted by ``email.utils.formataddr`` (RFC 2047
encoded when not ASCII); an address must be exactly one plain ``local@domain`` (anything else
is a ``ValueError``). The HTML body is autoescaped.

The message is built with the classic ``email.mime`` classes (``compat32``): the
``EmailMessage`` API parses every header it sets, which made building an invoice e-mail cost
more CPU than the Stripe requests of the same invoice.

Message-IDs are deterministic (``invoice_message_id``) so a re-run produces the same ID and
the outbox / delivery ledger can recognise a message it already sent. Each distinct e-mail
needs a distinct ``kind``: ``"invoice"``, ``"receipt"``, and for dunning a numbered variant
such as ``"reminder-1"``, ``"reminder-2"``, ``"overdue-1"``, ``"final_notice"``.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

from billing_pipeline.clock import utc_now
from billing_pipeline.domain.model import Invoice, Organization
from billing_pipeline.rendering.context import environment, invoice_reference, invoice_view, one_line
from billing_pipeline.rendering.seller import Seller

__all__ = ["KINDS", "build_invoice_email", "invoice_message_id", "invoice_subject"]

#: Base kinds (a ``-suffix`` such as ``reminder-2`` is allowed for uniqueness).
KINDS = ("invoice", "reminder", "overdue", "final_notice", "receipt")

_KIND_RE = re.compile(r"^(?P<base>[a-z_]+)(?:-[a-z0-9]{1,20})?$")
_DOMAIN_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDR_RE = re.compile(rf"^[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+$")
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP  # readable bodies (quoted-printable rather than base64)


def _address(display_name: str, addr_spec: str) -> str:
    """``"Name" <local@domain>``: exactly one plain address, the name quoted or encoded."""
    addr = one_line(addr_spec)
    if addr != addr_spec.strip() or not _ADDR_RE.match(addr) or ".." in addr:
        raise ValueError(f"not a single e-mail address: {addr_spec[:100]!r}")
    return email.utils.formataddr((one_line(display_name), addr), charset="utf-8")


def _header_text(value: str) -> str | Header:
    return value if value.isascii() else Header(value, "utf-8")


def _base_kind(kind: str) -> str:
    m = _KIND_RE.match(kind)
    if not m or m["base"] not in KINDS:
        raise ValueError(f"unknown e-mail kind {kind!r}; expected one of {KINDS} (optionally '-N')")
    return m["base"]


def invoice_message_id(invoice: Invoice, kind: str = "invoice", *, domain: str) -> str:
    """``<invoice-{number or draft reference}.{kind}@{domain}>``: same inputs, same ID."""
    _base_kind(kind)
    if not _DOMAIN_RE.match(domain):
        raise ValueError(f"invalid message-id domain {domain!r}")
    ref = _ID_UNSAFE.sub("_", invoice_reference(invoice))
    return f"<invoice-{ref}.{kind}@{domain}>"


def invoice_subject(invoice: Invoice, org: Organization, seller: Seller, kind: str = "invoice") -> str:
    """One-line subject, e.g. ``Invoice INV-2026-000042 from Seller — 1,234.50 USD due 2026-11-30``."""
    view = invoice_view(invoice, org, seller)
    number, who, due = view["number"], seller.name, view["due"]
    due_part = f" due {due}" if due else ""
    subject = {
        "invoice": f"Invoice {number} from {who} — {view['payment_subject']}",
        "reminder": f"Reminder: invoice {number} from {who} — {view['amount_due']}{due_part}",
        "overdue": f"Overdue: invoice {number} from {who} — {view['amount_due']} was{due_part}",
        "final_notice": f"Final notice: invoice {number} from {who} — {view['amount_due']} overdue",
        "receipt": f"Receipt for invoice {number} from {who} — {view['total']} paid",
    }[_base_kind(kind)]
    return one_line(subject)


def _intro(kind: str, view: dict) -> str:
    period = f"{view['period_start']} to {view['period_end']}"
    due = view["due"] or "on receipt"
    return {
        "invoice": f"Your invoice {view['number']} for the service period {period} is ready. {view['payment_summary']}",
        "reminder": f"This is a friendly reminder that invoice {view['number']} "
        f"({view['amount_due']}) is due by {due}.",
        "overdue": f"Invoice {view['number']} ({view['amount_due']}) was due on {due} and is now overdue. "
        "Please arrange payment as soon as possible.",
        "final_notice": f"Invoice {view['number']} ({view['amount_due']}) remains unpaid after its due "
        f"date of {due}. Please pay now to avoid interruption of service.",
        "receipt": f"Thank you: invoice {view['number']} ({view['total']}) has been paid.",
    }[kind]


def build_invoice_email(
    invoice: Invoice,
    org: Organization,
    seller: Seller,
    *,
    kind: str = "invoice",
    pdf: bytes | None,
    pdf_url: str | None,
    from_addr: str,
    message_id_domain: str,
    date: dt.datetime | None = None,
) -> Message:
    """The e-mail for ``invoice``; the PDF (if given) is attached as ``<number>.pdf``.

    ``from_addr`` is either a bare address (the seller's name becomes its display name)
    or a full ``"Name <addr>"``. ``date`` defaults to now (UTC).
    Raises ``ValueError`` for an unusable address, kind, domain or URL.
    """
    base = _base_kind(kind)
    link = _link(pdf_url)
    subject = invoice_subject(invoice, org, seller, kind)
    body = _body(invoice, org, seller, base, subject, link, has_pdf=pdf is not None)
    msg: Message = body if pdf is None else MIMEMultipart("mixed")
    _set_headers(msg, invoice, org, seller, kind, subject, from_addr, message_id_domain, date)
    if pdf is not None:
        msg.attach(body)
        msg.attach(_attachment(invoice, pdf))
    for part in msg.walk():
        if part is not msg:
            del part["MIME-Version"]  # the email.mime classes put one on every part
    return msg


def _link(pdf_url: str | None) -> str | None:
    """The PDF's link for the body: an http(s) URL, or None."""
    if pdf_url is not None and not re.match(r"^(https?|file)://", pdf_url):
        raise ValueError("pdf_url must be an http(s) or file URL")
    if pdf_url is not None and not re.match(r"^https?://", pdf_url):
        # The local document store's ``file://`` URI names a folder on this machine, which no
        # recipient can open: no link then (the PDF is attached).
        return None
    return pdf_url


def _body(
    invoice: Invoice, org: Organization, seller: Seller, base: str, subject: str, link: str | None, *, has_pdf: bool
) -> MIMEMultipart:
    """multipart/alternative: the text and the HTML rendering of the same message."""
    view = invoice_view(invoice, org, seller)
    context = {
        **view,
        "kind": base,
        "subject": subject,
        "greeting": f"Hello {one_line(org.name)},",
        "intro": _intro(base, view),
        "pdf_url": link,
        "has_pdf": has_pdf,
    }
    env = environment()
    body = MIMEMultipart("alternative")
    body.attach(MIMEText(env.get_template("email_invoice.txt.j2").render(context), "plain", _UTF8))
    body.attach(MIMEText(env.get_template("email_invoice.html.j2").render(context), "html", _UTF8))
    return body


def _attachment(invoice: Invoice, pdf: bytes) -> MIMEApplication:
    attachment = MIMEApplication(pdf, "pdf")
    filename = _ID_UNSAFE.sub("_", invoice_reference(invoice)) + ".pdf"
    attachment.add_header("Content-Disposition", "attachment", filename=filename)
    return attachment


def _set_headers(
    msg: Message,
    invoice: Invoice,
    org: Organization,
    seller: Seller,
    kind: str,
    subject: str,
    from_addr: str,
    message_id_domain: str,
    date: dt.datetime | None,
) -> None:
    """From, To, Reply-To, Subject, Date, Message-ID; then MIME-Version and Content-Type, the usual order."""
    from_line = one_line(from_addr)
    if "<" in from_line:
        name, addr = email.utils.parseaddr(from_line)
        msg["From"] = _address(name, addr)
    else:
        msg["From"] = _address(seller.name, from_line)
    msg["To"] = _address(org.name, org.billing_email)
    msg["Reply-To"] = _address(seller.name, seller.email)
    msg["Subject"] = _header_text(subject)
    msg["Date"] = email.utils.format_datetime((date or utc_now()).astimezone(dt.UTC))
    msg["Message-ID"] = invoice_message_id(invoice, kind, domain=message_id_domain)
    for name in ("MIME-Version", "Content-Type"):  # MIMEMultipart set them first
        value = msg[name]
        del msg[name]
        msg[name] = value
