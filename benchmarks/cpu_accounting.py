"""Who used the CPU during a benchmark phase: per-process CPU seconds from /proc, grouped.

    with CpuAccounting(classify) as acct:
        ...                       # the measured work
    acct.by_group                 # {"render workers": 51.2, "postgresql": 3.1, ...}

A thread samples every process's user+system time (``/proc/<pid>/stat``) every
``interval`` seconds; a process that ends between two samples loses at most that interval
of CPU (render workers are sampled right before they exit). ``classify(pid, comm, cmdline,
ppid)`` names the group of a process, or None to leave it out. ``rss_groups`` also track
the peak resident memory (VmHWM) of their processes. Linux only.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[str, int, float] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    ppid = int(fields[1])
    cpu = (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime
    return comm, ppid, cpu


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _peak_rss_kb(pid: int) -> int:
    """The process's peak resident set (VmHWM), in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _rss_kb(pid: int) -> int:
    """The process's current resident set (VmRSS), in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / _TICK, sum(values) / _TICK


class CpuAccounting:
    def __init__(
        self,
        classify: Callable[[int, str, str, int], str | None],
        interval: float = 0.25,
        rss_groups: tuple[str, ...] = (),
    ) -> None:
        self.classify = classify
        self.interval = interval
        self.rss_groups = rss_groups  # groups whose peak RSS (VmHWM) is tracked per process
        self._rss: dict[int, tuple[str, int]] = {}
        self._start: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._groups: dict[int, str | None] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.by_group: dict[str, float] = {}
        self.machine_busy = 0.0
        self.machine_total = 0.0
        self.peak_concurrent_rss_kb = 0  # the most the rss_groups held at one sample, all processes together

    def _sample(self, baseline: bool = False) -> None:
        concurrent = 0
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            st = _stat(pid)
            if st is None:
                continue
            comm, ppid, cpu = st
            if pid not in self._groups:
                self._groups[pid] = self.classify(pid, comm, _cmdline(pid), ppid)
            if self._groups[pid] is None:
                continue
            if baseline:
                self._start[pid] = cpu
            self._last[pid] = (self._groups[pid], cpu)
            if self._groups[pid] in self.rss_groups:
                self._rss[pid] = (self._groups[pid], max(self._rss.get(pid, ("", 0))[1], _peak_rss_kb(pid)))
                concurrent += _rss_kb(pid)
        self.peak_concurrent_rss_kb = max(self.peak_concurrent_rss_kb, concurrent)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> CpuAccounting:
        self._sample(baseline=True)
        self._m0 = machine_cpu_seconds()
        self._thread = threading.Thread(target=self._run, name="cpu-accounting", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        busy, total = machine_cpu_seconds()
        self.machine_busy = busy - self._m0[0]
        self.machine_total = total - self._m0[1]
        groups: dict[str, float] = {}
        for pid, (group, cpu) in self._last.items():
            groups[group] = groups.get(group, 0.0) + cpu - self._start.get(pid, 0.0)
        self.by_group = dict(sorted(groups.items(), key=lambda kv: -kv[1]))

    def peak_rss_mb(self) -> dict[str, float]:
        """Per tracked group: the sum of its processes' peak RSS (an upper bound when they ran one
        after the other; ``peak_concurrent_rss_kb`` is what was resident at once)."""
        out: dict[str, float] = {}
        for group, kb in self._rss.values():
            out[group] = out.get(group, 0.0) + kb / 1024
        return {g: round(v, 1) for g, v in out.items()}

    def per_item_ms(self, n: int) -> dict[str, float]:
        return {g: round(1000 * s / n, 1) for g, s in self.by_group.items()}
