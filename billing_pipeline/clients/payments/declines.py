"""Which declines are *hard* (stop retrying this payment method) and which are *soft* (retry later).

Follows Stripe's decline-code table (docs.stripe.com/declines/codes) and its ``advice_code``
(docs.stripe.com/declines/card): a code whose next step is "the customer needs to use another card /
contact their bank for a new one" is hard; one whose next step is "try again" (possibly later) is
soft. Card networks penalise retries of cards reported lost or stolen and of "do not try again"
answers, so an unknown code is soft only when Stripe's ``advice_code`` does not say otherwise.

* ``advice_code`` can only make a decline hard (``do_not_try_again``, ``confirm_card_data``): a
  ``try_again_later`` never reopens a card reported lost or stolen.
* ``no_payment_method`` (ours: the customer has no default payment method) is hard: nothing to charge.
* ``authentication_required`` is neither: the charge needs the customer (``requires_action``).
"""

from __future__ import annotations

from enum import StrEnum


class DeclineKind(StrEnum):
    HARD = "hard"
    SOFT = "soft"
    NEEDS_CUSTOMER = "needs_customer"


HARD_DECLINE_CODES = frozenset(
    {
        "card_not_supported",
        "currency_not_supported",
        "do_not_try_again",
        "expired_card",
        "fraudulent",
        "incorrect_cvc",
        "incorrect_number",
        "incorrect_pin",
        "incorrect_zip",
        "invalid_account",
        "invalid_cvc",
        "invalid_expiry_month",
        "invalid_expiry_year",
        "invalid_number",
        "lost_card",
        "merchant_blacklist",
        "new_account_information_available",
        "no_payment_method",
        "not_permitted",
        "pickup_card",
        "restricted_card",
        "revocation_of_all_authorizations",
        "revocation_of_authorization",
        "security_violation",
        "service_not_allowed",
        "stolen_card",
        "stop_payment_order",
        "transaction_not_allowed",
    }
)

SOFT_DECLINE_CODES = frozenset(
    {
        "approve_with_id",
        "call_issuer",
        "card_declined",
        "card_velocity_exceeded",
        "do_not_honor",
        "duplicate_transaction",
        "generic_decline",
        "insufficient_funds",
        "issuer_not_available",
        "no_action_taken",
        "offline_pin_required",
        "online_or_offline_pin_required",
        "pin_try_exceeded",
        "processing_error",
        "reenter_transaction",
        "testmode_decline",
        "try_again_later",
        "withdrawal_count_limit_exceeded",
    }
)

NEEDS_CUSTOMER_CODES = frozenset(
    {"authentication_required", "invoice_payment_intent_requires_action", "payment_intent_authentication_failure"}
)


def classify_decline(decline_code: str | None, advice_code: str | None = None) -> DeclineKind:
    """Hard, soft, or needs the customer, from Stripe's ``decline_code`` (or error ``code``) and ``advice_code``."""
    code = (decline_code or "").strip().lower()
    if code in NEEDS_CUSTOMER_CODES:
        return DeclineKind.NEEDS_CUSTOMER
    advice = (advice_code or "").strip().lower()
    if advice in ("do_not_try_again", "confirm_card_data") or code in HARD_DECLINE_CODES:
        return DeclineKind.HARD
    return DeclineKind.SOFT
