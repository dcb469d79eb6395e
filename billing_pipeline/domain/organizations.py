"""What an organization may hold: the limits of the database and of every delivery channel.

``organization_problems(org)`` lists every ``(field, message)`` an organization breaks;
``db.reference.upsert_organizations`` refuses an organization with any, so no path (the
customers import, ``seed-demo``, tests) writes one. The rules:

* ``id``: 1-64 characters (``organizations.id`` is ``VARCHAR(64)``) of ``A-Z a-z 0-9 . _ -``,
  starting with a letter or digit: it becomes a Dagster partition key (``2026-10-01|acme``),
  part of an S3 key, Stripe metadata and a file name.
* ``name``: non-empty, no leading or trailing space, at most 255 characters (PostgreSQL
  ``VARCHAR(255)``; SQLite would take more) and at most 500 bytes of UTF-8: the name is the
  display name of the ``To:`` header, RFC 2047 base64-encoded unfolded when not ASCII, and
  500 bytes (680 characters encoded) plus the longest address keep that line under SMTP's
  998-character limit (RFC 5321 section 4.5.3.1.6, ``500 Line too long``).
* ``name`` and ``billing_email``: no control characters (C0, DEL, C1: CR and LF included),
  no line or paragraph separators (U+2028, U+2029), no surrogates and no bidi embedding,
  override or isolate characters (U+202A-U+202E, U+2066-U+2069), which reorder the text
  around them in PDFs, mail clients and dashboards.
* ``billing_email``: exactly one plain ``local@domain`` address (no display name, no list),
  at most 254 characters (RFC 5321 forward-path), the same address rule the e-mail
  renderer applies (``rendering.email``), with no leading, trailing or doubled dots.
* ``currency`` known to ``domain.money``; ``tax_rate`` a fraction in ``[0, 1]`` with at most
  6 decimals (``NUMERIC(7, 6)``); ``payment_terms_days`` 0-365.
* collections: ``dunning_excluded`` true/false; ``account_manager_email`` none or one address
  (the ``billing_email`` rule); ``time_zone`` an IANA time zone name (``Europe/Paris``), at
  most 64 characters; ``sms_phone`` none or one E.164 number (``+`` then 8-15 digits, the first
  not 0: ``+14155550123``), the only form Twilio accepts (its error 21211 otherwise).
"""

from __future__ import annotations

import re
import unicodedata
import zoneinfo
from decimal import Decimal

from . import money
from .model import BillingInterval, Organization, OrganizationStatus

MAX_ID_LENGTH = 64
MAX_NAME_LENGTH = 255
MAX_NAME_UTF8_BYTES = 500
MAX_EMAIL_LENGTH = 254
TAX_RATE_DECIMALS = 6
MAX_PAYMENT_TERMS_DAYS = 365
MAX_TIME_ZONE_LENGTH = 64
MAX_PHONE_LENGTH = 16  # "+" and at most 15 digits (ITU-T E.164)

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+")
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_BIDI_CONTROLS = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_SHOWN_CHARS = 80


def show(value: object) -> str:
    """``repr(value)``, cut to a readable length (a bad value is never echoed whole)."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]}... ({len(str(value))} characters)"


def unsafe_character(text: str) -> str | None:
    """Why ``text`` cannot be printed or put in a header (its first refused character), or None."""
    for position, char in enumerate(text):
        if char in _BIDI_CONTROLS or unicodedata.category(char) in _REFUSED_CATEGORIES:
            what = unicodedata.name(char, "control character")
            kind = "a bidi control character" if char in _BIDI_CONTROLS else "a control character"
            return f"contains {kind}, U+{ord(char):04X} ({what}), at position {position}"
    return None


def id_problem(value: str) -> str | None:
    if not value or len(value) > MAX_ID_LENGTH or not _ID.fullmatch(value):
        return (
            f"must be 1-{MAX_ID_LENGTH} characters of A-Z a-z 0-9 . _ - starting with a letter or digit, "
            f"got {show(value)}"
        )
    return None


def name_problem(value: str) -> str | None:
    if not value.strip():
        return f"must be a non-empty name, got {show(value)}"
    unsafe = unsafe_character(value)
    if unsafe:
        return unsafe
    if value != value.strip():
        return f"must not start or end with spaces, got {show(value)}"
    if len(value) > MAX_NAME_LENGTH:
        return f"must be at most {MAX_NAME_LENGTH} characters, got {len(value)}"
    size = len(value.encode("utf-8"))
    if size > MAX_NAME_UTF8_BYTES:
        return (
            f"must be at most {MAX_NAME_UTF8_BYTES} bytes in UTF-8 (it is the e-mail's To: display name, "
            f"and a header line must stay under 998 characters), got {size} bytes"
        )
    return None


def address_problem(value: str) -> str | None:
    """Why ``value`` is not exactly one plain e-mail address, or None."""
    if any(sep in value for sep in ",;") or value.count("@") > 1 or any(ch.isspace() for ch in value.strip()):
        return f"must be one address, got {show(value)}"
    unsafe = unsafe_character(value)
    if unsafe:
        return f"must be one address on one line: {unsafe}"
    if len(value) > MAX_EMAIL_LENGTH:
        return f"must be at most {MAX_EMAIL_LENGTH} characters, got {len(value)}"
    local = value.partition("@")[0]
    if not _ADDRESS.fullmatch(value) or ".." in value or local.startswith(".") or local.endswith("."):
        return f"must be a plain address such as billing@example.com, got {show(value)}"
    return None


def tax_rate_problem(rate: Decimal) -> str | None:
    if not rate.is_finite() or not Decimal(0) <= rate <= Decimal(1):
        return f"must be a fraction between 0 and 1 (20 % is 0.20), got {show(str(rate))}"
    if rate != rate.quantize(Decimal(1).scaleb(-TAX_RATE_DECIMALS)):
        return f"must have at most {TAX_RATE_DECIMALS} decimals, got {show(str(rate))}"
    return None


def payment_terms_problem(days: int) -> str | None:
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_PAYMENT_TERMS_DAYS:
        return f"must be a whole number of days from 0 to {MAX_PAYMENT_TERMS_DAYS}, got {show(days)}"
    return None


def time_zone_problem(name: str) -> str | None:
    """Why ``name`` is not an IANA time zone this machine knows, or None."""
    if not isinstance(name, str) or not name or len(name) > MAX_TIME_ZONE_LENGTH or unsafe_character(name):
        return f"must be an IANA time zone name such as Europe/Paris or UTC, got {show(name)}"
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {show(name)} (IANA names such as Europe/Paris, America/New_York, UTC)"
    return None


def phone_problem(value: str) -> str | None:
    """Why ``value`` is not one phone number in E.164 form (``+14155550123``), or None."""
    if not isinstance(value, str) or not value.isascii() or not _E164.fullmatch(value):
        return f"must be an E.164 phone number (+, country code, number; digits only: +14155550123), got {show(value)}"
    return None


def currency_problem(code: str) -> str | None:
    try:
        money.exponent(code)
    except money.UnknownCurrency as exc:
        return str(exc)
    return None


def organization_problems(org: Organization) -> list[tuple[str, str]]:
    """Every ``(field, message)`` that ``org`` breaks; empty when it can be stored and delivered."""
    text_checks = (
        ("id", org.id, id_problem),
        ("name", org.name, name_problem),
        ("billing_email", org.billing_email, address_problem),
        ("currency", org.currency, currency_problem),
    )
    problems: list[tuple[str, str]] = []
    for field, value, check in text_checks:
        message = check(value) if isinstance(value, str) else f"must be a string, got {show(value)}"
        if message:
            problems.append((field, message))
    if not isinstance(org.tax_rate, Decimal):
        problems.append(("tax_rate", f"must be a Decimal, got {show(org.tax_rate)}"))
    elif message := tax_rate_problem(org.tax_rate):
        problems.append(("tax_rate", message))
    if message := payment_terms_problem(org.payment_terms_days):
        problems.append(("payment_terms_days", message))
    if not isinstance(org.status, OrganizationStatus):
        problems.append(("status", f"must be an OrganizationStatus, got {show(org.status)}"))
    if not isinstance(org.billing_interval, BillingInterval):
        problems.append(("billing_interval", f"must be a BillingInterval, got {show(org.billing_interval)}"))
    if not isinstance(org.auto_pay, bool):
        problems.append(("auto_pay", f"must be true or false, got {show(org.auto_pay)}"))
    return problems + _collection_problems(org)


def _collection_problems(org: Organization) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if not isinstance(org.dunning_excluded, bool):
        problems.append(("dunning_excluded", f"must be true or false, got {show(org.dunning_excluded)}"))
    manager = org.account_manager_email
    if manager is not None:
        message = address_problem(manager) if isinstance(manager, str) else f"must be a string, got {show(manager)}"
        if message:
            problems.append(("account_manager_email", message))
    if message := time_zone_problem(org.time_zone):
        problems.append(("time_zone", message))
    if org.sms_phone is not None and (message := phone_problem(org.sms_phone)):
        problems.append(("sms_phone", message))
    return problems


class InvalidOrganization(ValueError):
    """An organization breaks ``organization_problems``; the message names each field."""

    def __init__(self, org_id: object, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        details = "; ".join(f"{field}: {message}" for field, message in problems)
        super().__init__(f"organization {show(org_id)}: {details}")


def check_organization(org: Organization) -> None:
    """Raise ``InvalidOrganization`` unless ``org`` can be stored and delivered."""
    problems = organization_problems(org)
    if problems:
        raise InvalidOrganization(org.id, problems)
