"""Customers files: organizations and their subscriptions, every field validated.

``parse_customers(records, plans, stored)`` takes the records of one file as read (CSV,
JSON Lines or YAML: a mapping of field -> value each, with the line it came from) and
returns the organizations and subscriptions to write, or every problem found, each naming
its line and field (``customers.csv:7: billing_email: must be one address, got ...``).
Nothing is written unless the whole file is valid (``db.reference.import_customers``).

A record (README, "Customers"): the nine organization fields, all required so that an
omitted column never resets a stored value (``org_id name billing_email status currency
tax_rate billing_interval auto_pay payment_terms_days``), and optionally one subscription
(``plan starts_at ends_at``) or, in JSON Lines and YAML, a ``subscriptions`` list of them.
Optional, for collections (``OPTIONAL_FIELDS``): ``dunning_excluded``, ``account_manager_email``
(``none`` removes it), ``time_zone`` and ``sms_phone`` (E.164; ``none`` removes it); omitted (or
empty), the stored value is kept.
Field rules are ``domain.organizations``'; besides:

* ``tax_rate`` is parsed by ``money.to_decimal`` (the one decimal parser; floats refused:
  quote ``"0.20"`` in YAML); ``auto_pay`` is ``true``/``false``; ``payment_terms_days`` an integer;
* a subscription's plan exists in the latest catalog, is priced in the organization's
  currency and billed on its interval; ``starts_at``/``ends_at`` are ISO dates (midnight
  UTC) or ISO times in UTC (``Z`` or ``+00:00``), start before end;
* an organization's subscriptions (those in the file, and those stored that the file does
  not replace: same start) do not overlap, and stored ones must still match its currency
  and interval; an org id appears once per file.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from . import money
from .catalog import Plan
from .model import BillingInterval, Organization, OrganizationStatus
from .organizations import (
    address_problem,
    currency_problem,
    id_problem,
    name_problem,
    organization_problems,
    payment_terms_problem,
    phone_problem,
    show,
    tax_rate_problem,
    time_zone_problem,
)

UTC = dt.UTC
ORGANIZATION_FIELDS = (
    "org_id",
    "name",
    "billing_email",
    "status",
    "currency",
    "tax_rate",
    "billing_interval",
    "auto_pay",
    "payment_terms_days",
)
#: Optional (collections): a record that omits one keeps the stored value (new organization: the default).
OPTIONAL_FIELDS = ("dunning_excluded", "account_manager_email", "time_zone", "sms_phone")
SUBSCRIPTION_FIELDS = ("plan", "starts_at", "ends_at")
#: Every field a record may have (``subscriptions`` only where values can be lists).
FIELDS = (*ORGANIZATION_FIELDS, *OPTIONAL_FIELDS, *SUBSCRIPTION_FIELDS, "subscriptions")
#: ``account_manager_email: none`` removes a stored account manager (``sms_phone: none`` a phone).
NO_ACCOUNT_MANAGER = "none"
#: At most this many problems are reported (all are counted).
MAX_REPORTED_PROBLEMS = 50
_EARLIEST, _LATEST = dt.datetime(1970, 1, 1, tzinfo=UTC), dt.datetime(3000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SourceRecord:
    """One record as read: ``fields`` (absent or empty -> missing), where it was read."""

    line: int | None
    fields: Mapping[str, object]
    label: str = ""  # prefix of field paths, e.g. "customers[3]" in YAML
    field_lines: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Problem:
    line: int | None
    path: str
    message: str

    def describe(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line is not None else source
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


@dataclass(frozen=True, order=True)
class Subscription:
    starts_at: dt.datetime
    ends_at: dt.datetime | None
    plan_code: str

    def describe(self) -> str:
        end = self.ends_at.date().isoformat() if self.ends_at else "open-ended"
        return f"{self.plan_code} from {self.starts_at.date().isoformat()} ({end})"


@dataclass(frozen=True)
class Customer:
    organization: Organization
    subscriptions: tuple[Subscription, ...]
    line: int | None
    given: frozenset[str] = frozenset()  # the OPTIONAL_FIELDS the record sets


class CustomersInvalid(ValueError):
    """The file has problems; nothing was written. ``problems`` lists every one found."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source, self.problems = source, list(problems)
        shown = [p.describe(source) for p in self.problems[:MAX_REPORTED_PROBLEMS]]
        more = len(self.problems) - len(shown)
        tail = [f"... and {more} more problem(s)"] if more > 0 else []
        super().__init__("\n".join([*shown, *tail]))


class _Bad(ValueError):
    pass


def _present(value: object) -> bool:
    return value is not None and not (isinstance(value, str) and value == "")


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise _Bad(f"must be text, got {type(value).__name__} {show(value)}")
    return value


def _choice(value: object, allowed: type[OrganizationStatus] | type[BillingInterval]) -> object:
    try:
        return allowed(value)
    except ValueError:
        raise _Bad(f"must be one of {' | '.join(m.value for m in allowed)}, got {show(value)}") from None


def _tax_rate(value: object) -> decimal.Decimal:
    if isinstance(value, float):
        raise _Bad(f'must be a decimal string or integer, got float {value!r}: quote it ("0.20")')
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Bad(f"must be a decimal fraction such as 0.20, got {show(value)}")
    try:
        return money.to_decimal(value)
    except (ValueError, decimal.InvalidOperation):
        raise _Bad(f"must be a decimal fraction such as 0.20, got {show(value)}") from None


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _Bad(f"must be true or false, got {show(value)}")


def _integer(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value) < 10:
        return int(value)
    raise _Bad(f"must be a whole number of days, got {show(value)}")


def _instant(value: object) -> dt.datetime:
    """An ISO date (midnight UTC) or an ISO time in UTC; YAML gives date/datetime objects."""
    if isinstance(value, str) and len(value) <= 40:
        text = value.strip()
        try:
            value = dt.date.fromisoformat(text) if len(text) == 10 else dt.datetime.fromisoformat(text)
        except ValueError:
            raise _Bad(
                f"must be an ISO date (2026-01-01) or UTC time (2026-01-01T00:00:00Z), got {show(text)}"
            ) from None
    if isinstance(value, dt.datetime):
        if value.utcoffset() is None:
            raise _Bad(f"must be in UTC (end with Z or +00:00), got naive {value.isoformat()}")
        if value.utcoffset() != dt.timedelta(0):
            raise _Bad(f"must be in UTC (Z or +00:00), got offset {value.isoformat()}")
        instant = value.replace(tzinfo=UTC)
    elif isinstance(value, dt.date):
        instant = dt.datetime(value.year, value.month, value.day, tzinfo=UTC)
    else:
        raise _Bad(f"must be an ISO date (2026-01-01) or UTC time, got {show(value)}")
    if not _EARLIEST <= instant < _LATEST:
        raise _Bad(f"must be between 1970 and 2999, got {instant.isoformat()}")
    return instant


class _Row:
    """Collects the problems of one record, each with its field's line when known."""

    def __init__(self, record: SourceRecord, problems: list[Problem]) -> None:
        self.record, self.problems = record, problems

    def fail(self, path: str, message: str) -> None:
        top = path.split("[", 1)[0].split(".", 1)[0]
        line = self.record.field_lines.get(top, self.record.line)
        label = self.record.label
        self.problems.append(Problem(line, f"{label}.{path}" if label and path else label or path, message))

    def get(self, node: Mapping[str, object], name: str, parse, path: str = ""):
        value = node.get(name)
        where = f"{path}{name}"
        if not _present(value):
            self.fail(where, "is required")
            return None
        try:
            return parse(value)
        except _Bad as exc:
            self.fail(where, str(exc))
            return None


def _checked(parse, rule):
    """``parse`` then the ``domain.organizations`` rule for the parsed value."""

    def run(value: object):
        parsed = parse(value)
        message = rule(parsed)
        if message:
            raise _Bad(message)
        return parsed

    return run


_ORGANIZATION_PARSERS = {
    "org_id": ("id", _checked(_text, id_problem)),
    "name": ("name", _checked(_text, name_problem)),
    "billing_email": ("billing_email", _checked(_text, address_problem)),
    "status": ("status", lambda v: _choice(v, OrganizationStatus)),
    "currency": ("currency", _checked(_text, currency_problem)),
    "tax_rate": ("tax_rate", _checked(_tax_rate, tax_rate_problem)),
    "billing_interval": ("billing_interval", lambda v: _choice(v, BillingInterval)),
    "auto_pay": ("auto_pay", _boolean),
    "payment_terms_days": ("payment_terms_days", _checked(_integer, payment_terms_problem)),
}


def _removable(rule, what: str, *, phone: bool = False):
    """A text checked by ``rule``, or ``none``: None (the stored value removed)."""

    def parse(value: object) -> str | None:
        if phone and isinstance(value, int) and not isinstance(value, bool):  # YAML reads +14155550123 as 14155550123
            raise _Bad(f"must be text (quote it in YAML: '+{value}'), got the number {value}")
        text = _text(value).strip()
        if text.lower() == NO_ACCOUNT_MANAGER:
            return None
        message = rule(text)
        if message:
            raise _Bad(f"{message} (or {NO_ACCOUNT_MANAGER} to remove {what})")
        return text

    return parse


_OPTIONAL_PARSERS = {
    "dunning_excluded": _boolean,
    "account_manager_email": _removable(address_problem, "the account manager"),
    "time_zone": _checked(lambda v: _text(v).strip(), time_zone_problem),
    "sms_phone": _removable(phone_problem, "it", phone=True),
}


def _organization(row: _Row) -> tuple[Organization | None, dict[str, object]]:
    """The record's organization (None if any field is bad) and the values that did parse."""
    node = row.record.fields
    for name in sorted(set(node) - set(FIELDS), key=str):
        row.fail(str(name), f"unknown field (allowed: {', '.join(FIELDS)})")
    before = len(row.problems)
    values = {attr: row.get(node, name, parse) for name, (attr, parse) in _ORGANIZATION_PARSERS.items()}
    values |= {
        name: row.get(node, name, parse) for name, parse in _OPTIONAL_PARSERS.items() if _present(node.get(name))
    }
    if len(row.problems) > before:
        return None, values
    org = Organization(**values)  # type: ignore[arg-type]
    for name, message in organization_problems(org):  # none left: every rule ran above
        row.fail(name, message)
    return (None if len(row.problems) > before else org), values


def _subscription_nodes(row: _Row) -> list[tuple[str, Mapping[str, object]]]:
    node = row.record.fields
    flat = {name: node.get(name) for name in SUBSCRIPTION_FIELDS if _present(node.get(name))}
    listed = node.get("subscriptions")
    if _present(listed) and flat:
        row.fail("subscriptions", f"give either subscriptions or {', '.join(flat)}, not both")
        return []
    if flat:
        return [("", flat)]
    if not _present(listed):
        return []
    if not isinstance(listed, list):
        row.fail("subscriptions", f"must be a list of {{plan, starts_at, ends_at}}, got {show(listed)}")
        return []
    nodes = []
    for index, item in enumerate(listed):
        path = f"subscriptions[{index}]."
        if not isinstance(item, Mapping):
            row.fail(path[:-1], f"must be a mapping of plan, starts_at, ends_at, got {show(item)}")
            continue
        for name in sorted(set(item) - set(SUBSCRIPTION_FIELDS), key=str):
            row.fail(f"{path}{name}", f"unknown field (allowed: {', '.join(SUBSCRIPTION_FIELDS)})")
        nodes.append((path, item))
    return nodes


def subscription_problems(
    sub: Subscription, plans: Mapping[str, Plan], currency: str | None, interval: BillingInterval | None
) -> list[tuple[str, str]]:
    """``(field, message)`` for one subscription of an organization billed in ``currency`` on
    ``interval`` (``None``: unknown, not checked): plan known and matching, dates in order."""
    problems = []
    plan = plans.get(sub.plan_code)
    if plan is None:
        known = ", ".join(sorted(plans)) or "none"
        problems.append(("plan", f"unknown plan {sub.plan_code!r} in the latest catalog (known: {known})"))
    elif currency is not None and plan.currency != currency:
        problems.append(("plan", f"plan {plan.code!r} is priced in {plan.currency}, the organization in {currency}"))
    elif interval is not None and plan.interval is not interval:
        problems.append(
            ("plan", f"plan {plan.code!r} is billed {plan.interval.value}, the organization {interval.value}")
        )
    if sub.ends_at is not None and sub.ends_at <= sub.starts_at:
        problems.append(("ends_at", f"must be after starts_at ({sub.starts_at.date().isoformat()})"))
    return problems


def history_problems(
    org: Organization, given: Sequence[Subscription], stored: Sequence[Subscription], plans: Mapping[str, Plan]
) -> list[tuple[str, str]]:
    """``(field, message)`` for the organization's subscriptions once ``given`` are written.

    ``given`` replace the ``stored`` ones with the same start; the stored ones kept must
    still fit the organization (its currency or interval may be changing), and no two
    subscriptions may overlap.
    """
    starts = {s.starts_at for s in given}
    kept = [s for s in stored if s.starts_at not in starts]
    problems = []
    for sub in kept:
        for _, message in subscription_problems(sub, plans, org.currency, org.billing_interval):
            if not message.startswith("unknown plan"):  # a plan dropped since: billing reports it
                problems.append(("currency", f"stored subscription {sub.describe()}: {message}"))
    timeline = sorted((*given, *kept))
    for earlier, later in zip(timeline, timeline[1:], strict=False):
        if earlier.starts_at == later.starts_at:
            problems.append(("starts_at", f"two subscriptions start on {later.starts_at.date().isoformat()}"))
        elif earlier.ends_at is None or earlier.ends_at > later.starts_at:
            stored_note = " (stored: end it by listing it again with an ends_at)" if earlier in kept else ""
            problems.append(("starts_at", f"{later.describe()} overlaps {earlier.describe()}{stored_note}"))
    return problems


def _subscriptions(row: _Row, plans: Mapping[str, Plan], currency, interval) -> list[Subscription]:
    result = []
    for path, node in _subscription_nodes(row):
        plan_code = row.get(node, "plan", _text, path)
        starts_at = row.get(node, "starts_at", _instant, path)
        ends_at = row.get(node, "ends_at", _instant, path) if _present(node.get("ends_at")) else None
        if plan_code is None or starts_at is None:
            continue
        sub = Subscription(starts_at, ends_at, plan_code)
        found = subscription_problems(sub, plans, currency, interval)
        for name, message in found:
            row.fail(f"{path}{name}", message)
        if not found:
            result.append(sub)
    return result


def parse_customers(
    records: Iterable[SourceRecord],
    plans: Mapping[str, Plan],
    stored: Mapping[str, Sequence[Subscription]] | None = None,
    problems: Sequence[Problem] = (),
) -> tuple[list[Customer], list[Problem]]:
    """The customers of a file and every problem found (``problems`` seeds it: the reader's).

    ``plans`` are the latest catalog's; ``stored`` the organizations' subscriptions in the
    database. The customers are only meaningful when the problems list is empty.
    """
    found = list(problems)
    customers: list[Customer] = []
    first_line: dict[str, int | None] = {}
    for record in records:
        row = _Row(record, found)
        org, values = _organization(row)
        given = _subscriptions(row, plans, values["currency"], values["billing_interval"])
        org_id = record.fields.get("org_id")
        if isinstance(org_id, str) and org_id in first_line:
            where = f"line {first_line[org_id]}" if first_line[org_id] is not None else "earlier"
            row.fail("org_id", f"duplicate organization {org_id!r} (first on {where})")
            continue
        if isinstance(org_id, str):
            first_line[org_id] = record.line
        if org is not None:
            listed = _present(record.fields.get("subscriptions"))
            for name, message in history_problems(org, given, (stored or {}).get(org.id, ()), plans):
                row.fail("subscriptions" if listed and name == "starts_at" else name, message)
            optional = frozenset(name for name in OPTIONAL_FIELDS if _present(record.fields.get(name)))
            customers.append(Customer(org, tuple(sorted(given)), record.line, optional))
    found.sort(key=lambda p: (p.line is None, p.line or 0))
    return customers, found
