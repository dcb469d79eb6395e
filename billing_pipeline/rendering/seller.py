"""Who issues the invoices: printed on every PDF and e-mail."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Seller:
    name: str
    address_lines: tuple[str, ...]
    tax_id: str | None
    email: str
    payment_instructions: str  # free text, printed as-is (escaped), newlines kept
    website: str | None = None
    # A payment gateway will charge auto-pay organizations (PAYMENT_GATEWAY=stripe, channel enabled):
    # only then does an invoice claim an automatic charge (domain.settlement.payment_text).
    charges_automatically: bool = False
