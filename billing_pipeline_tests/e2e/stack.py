"""The whole system as a user runs it: PostgreSQL, dagster-webserver and dagster-daemon.

``DagsterStack`` owns a DAGSTER_HOME holding the production ``deploy/dagster.yaml`` (instance storage
in PostgreSQL through DAGSTER_PG_*), a workspace file, and the two Dagster servers started as
subprocesses in their own process groups with one shared environment. It also runs the
project's CLIs with that environment, speaks GraphQL to the webserver (what the UI calls),
and opens the same instance in this process for assertions.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from billing_pipeline_tests.support._util import LOCALHOST, free_port, pid_alive, port_is_open

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOCATION = "billing_pipeline"

#: Variables of the developer's shell that would point the servers somewhere else.
_SCRUBBED_PREFIXES = ("DAGSTER_", "BILLING_", "INVOICE_", "STRIPE_", "SMTP_", "S3_", "AWS_", "DOCUMENT")


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"(no {path.name})"
    return "\n".join(text)


class StackError(AssertionError):
    pass


class DagsterStack:
    def __init__(
        self, root: Path, *, pg_host: str, pg_port: int, instance_db: str, billing_url: str, settings: dict[str, str]
    ):
        self.root = root
        self.home = root / "dagster_home"
        self.billing_home = root / "billing_home"
        self.logs = root / "logs"
        for d in (self.home, self.billing_home, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "deploy" / "dagster.yaml", self.home / "dagster.yaml")
        self.workspace = root / "workspace.yaml"
        self.workspace.write_text(
            "load_from:\n"
            f"  - python_module: {{module_name: billing_pipeline.definitions, location_name: {LOCATION}, "
            f"working_directory: {REPO}}}\n"
        )
        self.billing_url = billing_url
        self.pg_env = {
            "DAGSTER_PG_HOST": pg_host,
            "DAGSTER_PG_PORT": str(pg_port),
            "DAGSTER_PG_USER": "postgres",
            "DAGSTER_PG_PASSWORD": "unused-trust-auth",
            "DAGSTER_PG_DB": instance_db,
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
        env.update(self.pg_env)
        env.update(
            {
                "DAGSTER_HOME": str(self.home),
                "BILLING_HOME": str(self.billing_home),
                "BILLING_DATABASE_URL": billing_url,
                "PYTHONUNBUFFERED": "1",
                "CI": "true",
                # the recommended settings (README "Performance settings"), as `make` exports them
                "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1",
                "DAGSTER_EVENT_BATCH_SIZE": "1000",
            }
        )
        env.update(settings)
        self.env = env
        self.port: int | None = None
        self._procs: dict[str, subprocess.Popen] = {}
        self._instance = None

    # ------------------------------------------------------------------ processes
    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")
        try:
            proc = subprocess.Popen(
                argv,
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        self._procs[name] = proc
        return proc

    def start(self, *, timeout: float = 120) -> None:
        """Start the webserver and the daemon; return once the UI serves the code location."""
        self.port = free_port()
        self._spawn(
            "webserver",
            [str(BIN / "dagster-webserver"), "-h", LOCALHOST, "-p", str(self.port), "-w", str(self.workspace)],
        )
        self._spawn("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(self.workspace)])
        self.wait_for(lambda: port_is_open(self.port), timeout, "the webserver to listen")
        self.wait_for(self._location_loaded, timeout, "the code location to load in the webserver")

    def _location_loaded(self) -> bool:
        data = self.graphql("""{ workspaceOrError { ... on Workspace { locationEntries {
            name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }""")
        for entry in data["workspaceOrError"]["locationEntries"]:
            loaded = entry["locationOrLoadError"]
            if entry["name"] == LOCATION and loaded and loaded["__typename"] == "PythonError":
                raise StackError(f"code location failed to load: {loaded['message']}")
            if entry["name"] == LOCATION and entry["loadStatus"] == "LOADED" and loaded:
                return True
        return False

    def check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise StackError(f"{name} exited with code {proc.returncode}\n{self.diagnostics()}")

    def stop(self) -> None:
        """SIGTERM each process group we created (servers, code servers, run workers), then SIGKILL."""
        for _name, proc in reversed(list(self._procs.items())):
            try:
                os.killpg(proc.pid, signal.SIGTERM)  # start_new_session: pgid == pid
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + 15
        for proc in self._procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self._procs.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # stragglers left in the group (run workers)
            except ProcessLookupError:
                pass
            if pid_alive(proc.pid):
                proc.wait(timeout=5)
        if self._instance is not None:
            self._instance.dispose()
            self._instance = None

    # ------------------------------------------------------------------ diagnostics and waiting
    def diagnostics(self) -> str:
        parts = []
        for name in ("webserver", "daemon"):
            parts.append(
                f"--- {name} log tail ({self.logs / (name + '.log')}) ---\n{_tail(self.logs / (name + '.log'))}"
            )
        return "\n".join(parts)

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str, interval: float = 1.0) -> Any:
        """Poll ``predicate`` until it returns something truthy; fail with the server logs."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            self.check_alive()
            try:
                value = predicate()
                if value:
                    return value
            except StackError:
                raise
            except (OSError, urllib.error.URLError, KeyError) as exc:  # server not up yet
                last_error = exc
            if time.monotonic() > deadline:
                raise StackError(
                    f"timed out after {timeout:.0f}s waiting for {what}"
                    f"{f' (last error: {last_error!r})' if last_error else ''}\n{self.diagnostics()}"
                )
            time.sleep(interval)

    # ------------------------------------------------------------------ clients
    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 60) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read())
        if payload.get("errors"):
            raise StackError(f"GraphQL errors: {json.dumps(payload['errors'], indent=1)[:3000]}")
        return payload["data"]

    def cli(self, *argv: str, timeout: float = 180) -> subprocess.CompletedProcess:
        """Run ``.venv/bin/<argv[0]> ...`` with the servers' environment, no stdin."""
        return self.finish(self.start_cli(*argv), timeout)

    def start_cli(self, *argv: str) -> subprocess.Popen:
        return subprocess.Popen(
            [str(BIN / argv[0]), *argv[1:]],
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @staticmethod
    def finish(proc: subprocess.Popen, timeout: float = 180) -> subprocess.CompletedProcess:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise StackError(f"{proc.args} timed out after {timeout}s:\n{out}\n{err}") from None
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def instance(self):
        """The same PostgreSQL-backed instance, opened in this process (needs DAGSTER_PG_* set here)."""
        if self._instance is None:
            import dagster as dg

            self._instance = dg.DagsterInstance.from_config(str(self.home))
        return self._instance
