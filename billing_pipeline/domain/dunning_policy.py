"""The dunning policy: which reminders go out when, to whom, through which channels.

A policy is data (``billing_pipeline/catalog/dunning.yaml``, versioned like the plan catalog);
``parse_policy(document)`` validates a parsed YAML/JSON document and names the field path of
the first problem (``steps[3].notify[1].audience: must be one of customer | account_manager``).

* ``version``: a positive integer; published versions are immutable (raise it to change one).
* ``catch_up``: what a run does with steps that became due on days no run saw (a missed day,
  an invoice finalized late): ``most_severe`` (default) sends only the latest due step of each
  invoice x audience and records the earlier ones ``skipped``; ``all_missed`` sends every one
  in order. ``domain.dunning.due_reminders`` applies it.
* ``steps``: offsets in days from the invoice's due date (negative: before it), each unique,
  with a ``code`` (``[a-z0-9_]``, unique: it is part of the ledger key and the Message-ID),
  ``notify`` (one entry per audience: ``customer`` or ``account_manager``, its ``channels`` and
  its ``template``) and an ``action`` taken when the step becomes due: ``none``,
  ``mark_invoice_uncollectible`` or ``suspend_organization``.
* ``channels``: ``email`` (the default policy's only one), ``sms`` (a short text to the
  organization's ``sms_phone``, customer notices only: an account manager has only an address;
  an organization without a phone gets the step's other channels). Slack and the in-app inbox
  are operators' alert channels (``ALERT_CHANNELS``), not customers'.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .catalog.fields import check_keys, choice, fail, integer, items, join, mapping
from .catalog.types import CatalogError

MAX_STEPS = 50
MAX_OFFSET_DAYS = 3650
CHANNELS = ("email", "sms")
_CODE = re.compile(r"[a-z0-9][a-z0-9_]{0,39}")
_TEMPLATE = re.compile(r"[a-z0-9][a-z0-9_]{0,63}")


class DunningPolicyError(ValueError):
    """The policy document is invalid; the message names the source and the field path."""


class Audience(str, enum.Enum):
    CUSTOMER = "customer"  # the organization's billing e-mail
    ACCOUNT_MANAGER = "account_manager"  # the organization's account manager, when it has one


class StepAction(str, enum.Enum):
    NONE = "none"
    MARK_INVOICE_UNCOLLECTIBLE = "mark_invoice_uncollectible"
    SUSPEND_ORGANIZATION = "suspend_organization"


class CatchUp(str, enum.Enum):
    MOST_SEVERE = "most_severe"
    ALL_MISSED = "all_missed"


@dataclass(frozen=True)
class StepNotice:
    audience: Audience
    channels: tuple[str, ...]
    template: str  # rendering/templates/<template>.txt.j2 and .html.j2


@dataclass(frozen=True)
class DunningStep:
    code: str
    offset_days: int  # from the due date, in the organization's days
    notify: tuple[StepNotice, ...]
    action: StepAction = StepAction.NONE


@dataclass(frozen=True)
class DunningPolicy:
    version: int
    steps: tuple[DunningStep, ...]  # ordered by offset
    catch_up: CatchUp = CatchUp.MOST_SEVERE

    def templates(self) -> set[str]:
        return {notice.template for step in self.steps for notice in step.notify}


def parse_policy(document: object, source: str = "dunning policy") -> DunningPolicy:
    """The policy in ``document`` (a mapping as YAML loads it); ``DunningPolicyError`` otherwise."""
    try:
        return _policy(document)
    except CatalogError as exc:
        raise DunningPolicyError(f"{source}: {exc}") from None


def _policy(document: object) -> DunningPolicy:
    root = mapping(document, "(root)")
    check_keys(root, "", {"version", "steps"}, {"catch_up"})
    version = integer(root["version"], "version", minimum=1)
    catch_up = choice(CatchUp, root.get("catch_up", CatchUp.MOST_SEVERE.value), "catch_up")
    steps = [_step(node, f"steps[{i}]") for i, node in enumerate(items(root["steps"], "steps", MAX_STEPS))]
    if not steps:
        raise fail("steps", "must list at least one step")
    for field, key in (("code", lambda s: s.code), ("offset_days", lambda s: s.offset_days)):
        seen: dict[object, int] = {}
        for index, step in enumerate(steps):
            if key(step) in seen:
                raise fail(f"steps[{index}].{field}", f"{key(step)!r} is also steps[{seen[key(step)]}]'s")
            seen[key(step)] = index
    for index, (earlier, later) in enumerate(zip(steps, steps[1:], strict=False)):
        if later.offset_days < earlier.offset_days:
            raise fail(f"steps[{index + 1}].offset_days", "steps must be listed in increasing offset order")
    return DunningPolicy(version, tuple(steps), catch_up)


def _step(node: object, path: str) -> DunningStep:
    step = mapping(node, path)
    check_keys(step, path, {"code", "offset_days", "notify"}, {"action"})
    code = _pattern(step["code"], join(path, "code"), _CODE, "1-40 characters of a-z 0-9 _")
    offset = step["offset_days"]
    if isinstance(offset, bool) or not isinstance(offset, int) or abs(offset) > MAX_OFFSET_DAYS:
        raise fail(
            join(path, "offset_days"), f"must be a whole number of days within ±{MAX_OFFSET_DAYS}, got {offset!r}"
        )
    action = choice(StepAction, step.get("action", StepAction.NONE.value), join(path, "action"))
    notices = [_notice(n, f"{path}.notify[{i}]") for i, n in enumerate(items(step["notify"], join(path, "notify"), 4))]
    if not notices:
        raise fail(join(path, "notify"), "must name at least one audience")
    audiences = [n.audience for n in notices]
    for index, audience in enumerate(audiences):
        if audiences.index(audience) != index:
            raise fail(f"{path}.notify[{index}].audience", f"{audience.value} is listed twice")
    return DunningStep(code, offset, tuple(notices), action)


def _notice(node: object, path: str) -> StepNotice:
    notice: Mapping[str, Any] = mapping(node, path)
    check_keys(notice, path, {"audience", "channels", "template"}, set())
    audience = choice(Audience, notice["audience"], join(path, "audience"))
    channels = items(notice["channels"], join(path, "channels"), len(CHANNELS))
    if not channels:
        raise fail(join(path, "channels"), "must name at least one channel")
    for index, channel in enumerate(channels):
        if channel not in CHANNELS or channels.index(channel) != index:
            why = "is listed twice" if channel in CHANNELS else f"must be one of {' | '.join(CHANNELS)}"
            raise fail(f"{path}.channels[{index}]", f"{why}, got {channel!r}")
    if audience is Audience.ACCOUNT_MANAGER and "sms" in channels:
        raise fail(
            f"{path}.channels[{channels.index('sms')}]",
            "sms goes to the organization's sms_phone: account_manager notices have an e-mail address only",
        )
    template = _pattern(notice["template"], join(path, "template"), _TEMPLATE, "1-64 characters of a-z 0-9 _")
    return StepNotice(audience, tuple(channels), template)


def _pattern(value: object, path: str, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise fail(path, f"must be {what}, got {value!r}")
    return value
