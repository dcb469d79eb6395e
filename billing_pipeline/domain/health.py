"""Service health: probe results, each component's state, and the rule that decides when a change
is worth telling.

A probe result is ``up``, ``down`` or ``not_configured`` (a local implementation with nothing to
reach, e.g. no payment gateway): only ``down`` is unhealthy. The transition rule compares a
component's stored state with its new result:

==================  ==========  ====================
previous state      new result  transition
==================  ==========  ====================
none (first probe)  healthy     unchanged
none (first probe)  down        became_unhealthy
healthy             down        became_unhealthy
unhealthy           healthy     recovered
same as before      same        unchanged
==================  ==========  ====================

so a component that stays down for a day gives one notice when it goes down and one when it is
back, whatever the number of probes in between. A notice's dedupe key is
``service_health:{component}:{transition}:{time}``, where the time is the previous probe's
(``checked_at`` of the stored state; the new probe's on a first probe): two probe runs that both
start from the same stored state derive the same key, so a ledger unique on it sends once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "ComponentState",
    "HealthChange",
    "HealthResult",
    "HealthStatus",
    "Transition",
    "apply_results",
    "next_state",
    "transition",
]


class HealthStatus(str, Enum):
    UP = "up"
    DOWN = "down"
    NOT_CONFIGURED = "not_configured"  # a local implementation with nothing to reach


class Transition(str, Enum):
    BECAME_UNHEALTHY = "became_unhealthy"
    RECOVERED = "recovered"
    UNCHANGED = "unchanged"


def _utc(value: dt.datetime, field: str) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError(f"{field}: must be an aware UTC time, got {value.isoformat()}")
    return value.astimezone(dt.UTC)


@dataclass(frozen=True)
class HealthResult:
    """One probe of one component: ``latency_ms`` is the probe's wall time, failed or not."""

    component: str
    status: HealthStatus
    latency_ms: float
    detail: str
    checked_at: dt.datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", HealthStatus(self.status))
        object.__setattr__(self, "checked_at", _utc(self.checked_at, "checked_at"))
        if not self.component:
            raise ValueError("component: must not be empty")

    @property
    def healthy(self) -> bool:
        return self.status is not HealthStatus.DOWN


@dataclass(frozen=True)
class ComponentState:
    """What the last probe found: healthy or not ``since`` when, last probed at ``checked_at``."""

    component: str
    healthy: bool
    since: dt.datetime
    checked_at: dt.datetime
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "component": self.component,
            "healthy": self.healthy,
            "since": self.since.isoformat(),
            "checked_at": self.checked_at.isoformat(),
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ComponentState:
        return cls(
            component=str(data["component"]),
            healthy=bool(data["healthy"]),
            since=_utc(dt.datetime.fromisoformat(str(data["since"])), "since"),
            checked_at=_utc(dt.datetime.fromisoformat(str(data["checked_at"])), "checked_at"),
            detail=str(data.get("detail", "")),
        )


@dataclass(frozen=True)
class HealthChange:
    """A component went down or came back: the notice an operator should get once."""

    component: str
    transition: Transition
    at: dt.datetime  # the probe that saw the change
    previous_checked_at: dt.datetime  # the probe before it (the new one on a first probe)
    detail: str

    @property
    def dedupe_key(self) -> str:
        return f"service_health:{self.component}:{self.transition.value}:{self.previous_checked_at.isoformat()}"

    @property
    def subject(self) -> str:
        state = "unhealthy" if self.transition is Transition.BECAME_UNHEALTHY else "healthy again"
        return f"{self.component} is {state}"

    def to_dict(self) -> dict[str, str]:
        return {
            "component": self.component,
            "transition": self.transition.value,
            "at": self.at.isoformat(),
            "previous_checked_at": self.previous_checked_at.isoformat(),
            "detail": self.detail,
            "dedupe_key": self.dedupe_key,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> HealthChange:
        return cls(
            component=str(data["component"]),
            transition=Transition(str(data["transition"])),
            at=_utc(dt.datetime.fromisoformat(str(data["at"])), "at"),
            previous_checked_at=_utc(
                dt.datetime.fromisoformat(str(data["previous_checked_at"])), "previous_checked_at"
            ),
            detail=str(data.get("detail", "")),
        )


def transition(previous: ComponentState | None, result: HealthResult) -> Transition:
    """The rule of the module docstring: a notice only when healthy flips (or a first probe is down)."""
    was_healthy = True if previous is None else previous.healthy
    if was_healthy and not result.healthy:
        return Transition.BECAME_UNHEALTHY
    if not was_healthy and result.healthy:
        return Transition.RECOVERED
    return Transition.UNCHANGED


def next_state(previous: ComponentState | None, result: HealthResult) -> ComponentState:
    same = previous is not None and previous.healthy == result.healthy
    return ComponentState(
        component=result.component,
        healthy=result.healthy,
        since=previous.since if same and previous is not None else result.checked_at,
        checked_at=result.checked_at,
        detail=result.detail,
    )


def apply_results(
    previous: Mapping[str, ComponentState], results: Iterable[HealthResult]
) -> tuple[dict[str, ComponentState], list[HealthChange]]:
    """The new state of every component (those not probed this time kept as they were) and the
    changes to tell, in the order of ``results``. A result older than the stored state (a probe
    run that overlapped a later one) changes nothing."""
    states = dict(previous)
    changes: list[HealthChange] = []
    for result in results:
        before = previous.get(result.component)
        if before is not None and result.checked_at < before.checked_at:
            continue
        move = transition(before, result)
        if move is not Transition.UNCHANGED:
            changes.append(
                HealthChange(
                    component=result.component,
                    transition=move,
                    at=result.checked_at,
                    previous_checked_at=before.checked_at if before is not None else result.checked_at,
                    detail=result.detail,
                )
            )
        states[result.component] = next_state(before, result)
    return states, changes
