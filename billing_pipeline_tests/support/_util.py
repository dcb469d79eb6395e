"""Small helpers shared by the local test servers (ports, waiting, cleanup)."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable

LOCALHOST = "127.0.0.1"


def free_port(avoid: Iterable[int] = ()) -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The kernel picks it (bind to port 0), then the socket is closed, so there
    is a small race with other processes; callers that start servers retry
    on "address in use".
    """
    avoid = set(avoid)
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((LOCALHOST, 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port
    raise RuntimeError("could not find a free TCP port on 127.0.0.1")


def free_ports(n: int, *, max_port: int = 65535) -> list[int]:
    """Return *n* distinct free ports, all <= max_port."""
    ports: list[int] = []
    while len(ports) < n:
        p = free_port(avoid=ports)
        if p <= max_port:
            ports.append(p)
    return ports


def port_is_open(port: int, host: str = LOCALHOST, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    interval: float = 0.02,
    what: str = "condition",
    proc: subprocess.Popen | None = None,
    log_path: str | None = None,
) -> None:
    """Poll *predicate* until true; fail early if *proc* exits."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"process exited with code {proc.returncode} while waiting for {what}" + _log_tail(log_path)
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}" + _log_tail(log_path))
        time.sleep(interval)


def _log_tail(path: str | None, n: int = 40) -> str:
    if not path or not os.path.exists(path):
        return ""
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()[-n:]
        return "\n--- last log lines (" + path + ") ---\n" + "\n".join(lines)
    except OSError:
        return ""


def terminate_pid(pid: int, timeout: float = 5.0, sig: int = signal.SIGTERM) -> None:
    """Send *sig* to one pid we started, wait, then SIGKILL it. Never touches other pids."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def pid_alive(pid: int) -> bool:
    try:
        # reap if it is our child
        wpid, _ = os.waitpid(pid, os.WNOHANG)
        if wpid == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # zombie that is not our child: treat as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(")")[-1].split()[0] == "Z":
                return False
    except OSError:
        return False
    return True


class _Registry:
    """Keeps every started server so an interpreter exit stops them (atexit)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._servers: list = []
        atexit.register(self.stop_all)

    def add(self, server) -> None:
        with self._lock:
            if server not in self._servers:
                self._servers.append(server)

    def remove(self, server) -> None:
        with self._lock:
            if server in self._servers:
                self._servers.remove(server)

    def stop_all(self) -> None:
        with self._lock:
            servers = list(reversed(self._servers))
        for s in servers:
            try:
                s.stop()
            except Exception:  # pragma: no cover - best effort at exit
                pass


registry = _Registry()


OWNER_FILE = "owner.pid"


def mark_owner(directory: str) -> None:
    """Record which process owns a temp dir, so a later run can sweep it if that process was killed."""
    try:
        with open(os.path.join(directory, OWNER_FILE), "w") as f:
            f.write(str(os.getpid()))
    except OSError:
        pass


def sweep_stale_dirs(prefix: str, extra_pid_files: tuple[str, ...] = ()) -> None:
    """Remove ``/tmp/<prefix>*`` dirs left by killed runs: owner pid dead and no server pid alive.

    Only dirs carrying our owner.pid marker are considered; nothing is ever killed here.
    """
    import glob
    import tempfile

    for d in glob.glob(os.path.join(tempfile.gettempdir(), prefix + "*")):
        try:
            with open(os.path.join(d, OWNER_FILE)) as f:
                owner = int(f.read().strip() or 0)
        except (OSError, ValueError):
            continue
        if owner <= 0 or pid_alive(owner):
            continue
        busy = False
        for rel in extra_pid_files:
            try:
                with open(os.path.join(d, rel)) as f:
                    pid = int(f.readline().strip())
                if pid_alive(pid):
                    busy = True
            except (OSError, ValueError):
                pass
        if not busy:
            import shutil

            shutil.rmtree(d, ignore_errors=True)
