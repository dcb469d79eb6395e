"""The one clock: every "now" of the project's own code comes from ``utc_now()``.

Code that decides something from the time takes ``now`` as a parameter (domain,
services) or reads ``context.scheduled_execution_time`` (schedules); only the edges
(CLI defaults, sensors, asset bodies, row timestamps) call this. Tests pin it with
time-machine (``BILLING_TEST_NOW``, see billing_pipeline_tests/conftest.py).
"""

from __future__ import annotations

import datetime as dt


def utc_now() -> dt.datetime:
    """The current time, aware, in UTC."""
    return dt.datetime.now(dt.UTC)
