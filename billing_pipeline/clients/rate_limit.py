"""A token bucket per vendor, shared by the threads of one process.

Dagster pools bound how many *ops* run at once across runs, not how many requests the I/O
threads inside an op make, so each client holds a bucket and takes one token per request
(Stripe API call, S3 request, SMTP message). ``rate`` tokens are added per second up to
``burst``; ``acquire`` blocks until a token is there. ``rate <= 0`` means no limit.

The limit is per process: with N delivery runs at once the vendor sees up to N x rate
(set the settings accordingly; see README, "Vendor rate limits").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["TokenBucket"]

_EPSILON = 1e-9


class TokenBucket:
    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, self.rate))
        if self.rate > 0 and self.burst < 1:
            raise ValueError("burst must be at least 1 token")
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = threading.Lock()

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def try_acquire(self) -> float:
        """Take a token if there is one: returns 0.0, else the seconds until one is due."""
        if self.unlimited:
            return 0.0
        with self._lock:
            self._refill(self._clock())
            if self._tokens >= 1 - _EPSILON:  # (a refill of exactly one token can sum to 0.99999...)
                self._tokens = max(0.0, self._tokens - 1)
                return 0.0
            return (1 - self._tokens) / self.rate

    def acquire(self) -> float:
        """Block until a token is taken; returns the seconds waited."""
        waited = 0.0
        while True:
            wait = self.try_acquire()
            if wait <= 0:
                return waited
            self._sleep(wait)
            waited += wait

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate}, burst={self.burst})"
