"""SMS texts: one segment, few facts.

An SMS segment holds 160 GSM-7 characters (GSM 03.38; ``^ { } [ ] ~ | \\ €`` take two, an escape
and the character) or, when any character is outside GSM-7, 70 UCS-2 code units (Twilio's
glossary: "What is GSM-7 character encoding?"). ``fit_sms`` keeps a text within one segment:
longer ones are cut at a word boundary and end in ``...``, never inside an escape pair or a
surrogate pair. ``reminder_sms`` is the payment reminder's text: the seller's name, the invoice
number, the amount due and the due date, nothing else about the customer (an SMS is read on a
lock screen and stored by carriers).
"""

from __future__ import annotations

from billing_pipeline.domain import money
from billing_pipeline.rendering.reminders import ReminderFacts
from billing_pipeline.rendering.seller import Seller

GSM_SEGMENT = 160
UCS2_SEGMENT = 70
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")
_ELLIPSIS = "..."


def _septets(char: str) -> int:
    """1 or 2 for a GSM-7 character (basic, or escape + extension), 0 when it is not in GSM-7."""
    return 1 if char in _GSM_BASIC else 2 if char in _GSM_EXTENDED else 0


def gsm7_length(text: str) -> int | None:
    """Septets ``text`` takes in GSM-7, or None when a character is not in GSM-7."""
    total = 0
    for char in text:
        if not (cost := _septets(char)):
            return None
        total += cost
    return total


def sms_length(text: str) -> tuple[int, int]:
    """(units used, units one segment holds): GSM-7 septets of 160, or UTF-16 units of 70."""
    septets = gsm7_length(text)
    if septets is not None:
        return septets, GSM_SEGMENT
    return len(text.encode("utf-16-le")) // 2, UCS2_SEGMENT


def fit_sms(text: str) -> str:
    """``text`` on one line of single spaces, cut to one SMS segment (see the module doc)."""
    text = " ".join(text.split())
    used, limit = sms_length(text)
    if used <= limit:
        return text
    end, septets, units = 0, 0, 0  # the longest prefix that fits, in its own encoding (escapes 2, astral 2 units)
    for char in text:
        septets = septets + _septets(char) if septets is not None and _septets(char) else None
        units += 2 if ord(char) > 0xFFFF else 1
        used, limit = (septets, GSM_SEGMENT) if septets is not None else (units, UCS2_SEGMENT)
        if used > limit - len(_ELLIPSIS):
            break
        end += 1
    cut = text[:end]
    if " " in cut[len(cut) // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,.;:-") + _ELLIPSIS


def reminder_sms(facts: ReminderFacts, seller: Seller) -> str:
    """The reminder's SMS: who asks, which invoice, how much, by when; one segment."""
    amount = money.format_amount(money.from_minor(facts.amount_due_minor, facts.currency), facts.currency)
    due = facts.due_date.isoformat()
    overdue = (facts.today - facts.due_date).days
    if overdue > 0:
        when = f"was due {due} ({overdue} day{'s' if overdue != 1 else ''} overdue)"
    else:
        when = f"is due {due}"
    return fit_sms(f"{seller.name}: invoice {facts.invoice_number}, {amount}, {when}.")
