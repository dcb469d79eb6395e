"""The shared client helpers: token bucket (injected clock), write-once files, the redactor."""

from __future__ import annotations

import threading

import pytest

from billing_pipeline.clients.files import write_once, write_replacing
from billing_pipeline.clients.rate_limit import TokenBucket
from billing_pipeline.clients.redaction import Redactor, redact


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def test_bucket_allows_a_burst_then_the_rate():
    clock = Clock()
    bucket = TokenBucket(10, burst=3, clock=clock, sleep=clock.sleep)
    assert [bucket.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]  # the burst
    assert bucket.acquire() == pytest.approx(0.1)  # then one token per 1/rate s
    assert bucket.acquire() == pytest.approx(0.1)
    assert clock.sleeps == [0.1, 0.1]
    clock.now += 10  # idle: refills up to the burst, not beyond
    assert [bucket.try_acquire() for _ in range(4)][:3] == [0.0, 0.0, 0.0]
    assert bucket.try_acquire() == pytest.approx(0.1)


def test_bucket_rate_over_time_and_unlimited():
    clock = Clock()
    bucket = TokenBucket(4, burst=1, clock=clock, sleep=clock.sleep)
    start = clock.now
    for _ in range(41):
        bucket.acquire()
    assert clock.now - start == pytest.approx(10.0)  # 40 tokens after the first, at 4/s
    free = TokenBucket(0)
    assert free.unlimited and all(free.acquire() == 0.0 for _ in range(1000))
    with pytest.raises(ValueError):
        TokenBucket(5, burst=0.5)


def test_bucket_is_shared_by_threads_without_overdrawing():
    clock = Clock()
    lock = threading.Lock()

    def sleep(seconds):
        with lock:
            clock.now += seconds

    bucket = TokenBucket(100, burst=5, clock=clock, sleep=sleep)
    threads = [threading.Thread(target=lambda: [bucket.acquire() for _ in range(25)]) for _ in range(4)]
    start = clock.now
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clock.now - start >= (100 - 5) / 100 - 1e-9  # never more than burst + rate x time


def test_write_once_refuses_to_replace(tmp_path):
    path = tmp_path / "a" / "doc.pdf"
    assert write_once(path, b"one") is True
    assert write_once(path, b"two") is False
    assert path.read_bytes() == b"one"
    assert [p.name for p in path.parent.iterdir()] == ["doc.pdf"]  # no temp files left
    write_replacing(path, b"three")
    assert path.read_bytes() == b"three"


def test_redactor_patterns():
    r = Redactor(["hunter22"])
    text = r("pw hunter22 key sk_live_abcDEF url postgresql://u:pw@h/db https://x?X-Amz-Signature=ff&a=1")
    assert "hunter22" not in text and "sk_live_abcDEF" not in text and "u:pw@" not in text
    assert "X-Amz-Signature=ff" not in text
    assert redact("key sk_test_****1234 Bearer abc") == "key [redacted] [redacted]"
