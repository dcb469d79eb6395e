"""Payment reminder e-mails: a policy template name and the facts in, subject + text + HTML out.

Templates are ``templates/<name>.txt.j2`` (which sets ``subject``) and ``<name>.html.j2``, named by
the dunning policy (``catalog/dunning.yaml``). Amounts reach them formatted by ``domain.money``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import jinja2

from billing_pipeline.domain import money
from billing_pipeline.domain.model import Organization
from billing_pipeline.rendering.context import TEMPLATES_DIR, environment, one_line
from billing_pipeline.rendering.seller import Seller


@dataclass(frozen=True)
class ReminderFacts:
    org: Organization
    invoice_number: str
    step: str
    offset_days: int
    due_date: dt.date  # in the organization's time zone
    today: dt.date  # idem
    amount_due_minor: int
    total_minor: int
    currency: str


@dataclass(frozen=True)
class RenderedReminder:
    subject: str
    text: str
    html: str


def missing_templates(names: set[str]) -> list[str]:
    """The template files a policy names that do not exist."""
    return sorted(
        f"{name}{ext}"
        for name in names
        for ext in (".txt.j2", ".html.j2")
        if not (TEMPLATES_DIR / f"{name}{ext}").is_file()
    )


def render_reminder(template: str, facts: ReminderFacts, seller: Seller) -> RenderedReminder:
    def amount(minor: int) -> str:
        return money.format_amount(money.from_minor(minor, facts.currency), facts.currency)

    context = {
        "org_name": one_line(facts.org.name),
        "org_id": facts.org.id,
        "billing_email": facts.org.billing_email,
        "invoice_number": facts.invoice_number,
        "step": facts.step,
        "due_date": facts.due_date.isoformat(),
        "days_until_due": max((facts.due_date - facts.today).days, 0),
        "days_overdue": max((facts.today - facts.due_date).days, 0),
        "amount_due": amount(facts.amount_due_minor),
        "total": amount(facts.total_minor),
        "seller": seller,
        "payment_lines": [line for line in seller.payment_instructions.splitlines() if line.strip()],
    }
    env = environment()
    try:
        text_template = env.get_template(f"{template}.txt.j2")
        html_template = env.get_template(f"{template}.html.j2")
    except jinja2.TemplateNotFound as exc:
        raise ValueError(f"reminder template {exc.name!r} not found in {TEMPLATES_DIR}") from None
    module = text_template.make_module(context)
    subject = one_line(str(getattr(module, "subject", "")))
    if not subject:
        raise ValueError(f"reminder template {template}.txt.j2 sets no subject")
    text = str(module).lstrip("\n")
    html = html_template.render({**context, "subject": subject})
    return RenderedReminder(subject, text, html)
