"""Throwaway PostgreSQL 15 cluster for tests and benchmarks.

    with PostgresServer() as pg:
        url = pg.create_database("billing_test")   # postgresql+psycopg://postgres@127.0.0.1:PORT/billing_test

The cluster lives in a temp dir owned by the ``postgres`` OS user (we run as
root: initdb/pg_ctl run through ``runuser -u postgres --``, the postmaster through ``setpriv``),
listens on 127.0.0.1 only (plus a unix socket inside the temp dir), uses a
free port, trust auth, and durability switched off (fsync, synchronous_commit,
full_page_writes) because the data is disposable.  The postmaster runs in
the foreground as our child (through ``setpriv``, which also sets a parent-death
signal); ``stop()`` sends it SIGINT (= ``pg_ctl stop -m fast``), escalating to
SIGQUIT/SIGKILL, and removes the directory.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

from ._util import LOCALHOST, free_port, mark_owner, registry, sweep_stale_dirs, terminate_pid

PG_VERSION = "15"
DEFAULT_BINDIR = f"/usr/lib/postgresql/{PG_VERSION}/bin"
APT_PACKAGE = f"postgresql-{PG_VERSION}"

_DB_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGQUIT)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class PostgresNotInstalled(RuntimeError):
    pass


def find_pg_bindir(bindir: str | None = None) -> str:
    bindir = bindir or os.environ.get("BILLING_TEST_PG_BINDIR") or DEFAULT_BINDIR
    missing = [b for b in ("initdb", "pg_ctl", "postgres") if not os.access(os.path.join(bindir, b), os.X_OK)]
    if missing:
        raise PostgresNotInstalled(
            f"PostgreSQL {PG_VERSION} binaries not found in {bindir} (missing: {', '.join(missing)}). "
            f"Install the Debian package: apt-get update && apt-get install -y {APT_PACKAGE} "
            f"(or point BILLING_TEST_PG_BINDIR at a directory containing initdb/pg_ctl/postgres)."
        )
    return bindir


class PostgresServer:
    """A disposable PostgreSQL cluster.  Usable as a context manager."""

    user = "postgres"  # database superuser name

    def __init__(
        self,
        *,
        bindir: str | None = None,
        port: int | None = None,
        max_connections: int = 200,
        extra_settings: dict[str, str] | None = None,
        base_dir: str | None = None,
        os_user: str = "postgres",
        start_timeout: float = 30.0,
    ) -> None:
        self.bindir = find_pg_bindir(bindir)
        self.host = LOCALHOST
        self._requested_port = port
        self.port: int | None = None
        self.max_connections = max_connections
        self.extra_settings = dict(extra_settings or {})
        self.base_dir = base_dir
        self.os_user = os_user
        self.start_timeout = start_timeout
        self.tmpdir: str | None = None
        self.datadir: str | None = None
        self.logfile: str | None = None
        self.pid: int | None = None  # postmaster pid
        self.startup_seconds: float | None = None
        self._databases: list[str] = []
        self._proc: subprocess.Popen | None = None

    # ------------------------------------------------------------------ helpers
    def _as_pg(self, *argv: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", self.os_user, "--", *argv]
        return list(argv)

    def _run(self, *argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            self._as_pg(*argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.tmpdir or "/",
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}" + self._log_tail()
            )
        return proc

    def _log_tail(self) -> str:
        if self.logfile and os.path.exists(self.logfile):
            with open(self.logfile, errors="replace") as f:
                return "\n--- postgres log ---\n" + "".join(f.readlines()[-30:])
        return ""

    @property
    def running(self) -> bool:
        return self.pid is not None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> PostgresServer:
        if self.running:
            return self
        t0 = time.monotonic()
        if self.base_dir is None:
            sweep_stale_dirs("billing-pg-", extra_pid_files=("data/postmaster.pid",))
        self.tmpdir = tempfile.mkdtemp(prefix="billing-pg-", dir=self.base_dir)
        mark_owner(self.tmpdir)
        registry.add(self)
        try:
            if os.geteuid() == 0:
                try:
                    pw = pwd.getpwnam(self.os_user)
                except KeyError:
                    raise PostgresNotInstalled(
                        f"OS user {self.os_user!r} not found; it is created by the Debian package "
                        f"{APT_PACKAGE} (apt-get install -y {APT_PACKAGE})."
                    ) from None
                os.chown(self.tmpdir, pw.pw_uid, pw.pw_gid)
            os.chmod(self.tmpdir, 0o700)
            self.datadir = os.path.join(self.tmpdir, "data")
            self.logfile = os.path.join(self.tmpdir, "postgres.log")
            self._init_datadir()
            self._write_config()
            last_err: Exception | None = None
            for _attempt in range(5):
                self.port = self._requested_port or free_port()
                try:
                    self._start_postmaster()
                    break
                except RuntimeError as e:  # most likely: port taken between probe and bind
                    last_err = e
                    msg = str(e).lower()
                    port_taken = "already in use" in msg or "could not bind" in msg
                    if self._requested_port or not port_taken:
                        raise
            else:
                raise RuntimeError(f"could not start postgres: {last_err}")
            self.pid = self._proc.pid
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    _INITDB_ARGS = ("-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")

    def _template_dir(self) -> str | None:
        """A pristine initdb output cached per (binary, user, args) so later starts only copy it."""
        if os.environ.get("BILLING_TEST_PG_NO_TEMPLATE"):
            return None
        initdb = os.path.join(self.bindir, "initdb")
        st = os.stat(initdb)
        key = hashlib.sha256(
            repr(
                (os.path.realpath(initdb), st.st_size, int(st.st_mtime), self.user, self.os_user, self._INITDB_ARGS)
            ).encode()
        ).hexdigest()[:16]
        return os.path.join(tempfile.gettempdir(), f"billing-pg-template-{os.geteuid()}-{key}")

    def _init_datadir(self) -> None:
        initdb = os.path.join(self.bindir, "initdb")
        template = self._template_dir()
        if template and os.path.isfile(os.path.join(template, "PG_VERSION")):
            subprocess.run(
                ["cp", "-a", template, self.datadir],
                check=True,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=60,
            )
            return
        self._run(initdb, "-D", self.datadir, "-U", self.user, *self._INITDB_ARGS)
        if template:
            # publish a copy atomically (concurrent sessions may race: the loser just discards its copy)
            staging = f"{template}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}"
            try:
                subprocess.run(
                    ["cp", "-a", self.datadir, staging],
                    check=True,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=60,
                )
                os.rename(staging, template)
            except (OSError, subprocess.SubprocessError):
                shutil.rmtree(staging, ignore_errors=True)

    def _write_config(self) -> None:
        settings = {
            "listen_addresses": f"'{LOCALHOST}'",
            "unix_socket_directories": f"'{self.tmpdir}'",
            "max_connections": str(self.max_connections),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "128MB",
            "logging_collector": "off",
            "log_min_messages": "warning",
            "dynamic_shared_memory_type": "posix",
        }
        settings.update(self.extra_settings)
        conf = os.path.join(self.datadir, "postgresql.conf")
        lines = ["", "# --- billing_pipeline_tests ---"]
        lines += [f"{k} = {v}" for k, v in settings.items()]
        with open(conf, "a") as f:
            f.write("\n".join(lines) + "\n")
        hba = os.path.join(self.datadir, "pg_hba.conf")
        with open(hba, "w") as f:
            f.write("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        if os.geteuid() == 0:
            pw = pwd.getpwnam(self.os_user)
            for p in (conf, hba):
                os.chown(p, pw.pw_uid, pw.pw_gid)

    def _start_postmaster(self) -> None:
        """Run the postmaster in the foreground as our direct child (not daemonized by pg_ctl).

        It gets SIGQUIT (immediate shutdown) if this Python process dies without cleaning up
        (``setpriv --pdeathsig``), so a killed test run does not leave a cluster behind.
        """
        postgres = os.path.join(self.bindir, "postgres")
        argv = [postgres, "-D", self.datadir, "-p", str(self.port)]
        if os.geteuid() == 0:
            argv = [
                "setpriv",
                f"--reuid={self.os_user}",
                f"--regid={self.os_user}",
                "--init-groups",
                "--pdeathsig",
                "QUIT",
                "--",
                *argv,
            ]
            preexec = None
        else:
            preexec = _die_with_parent
        log = open(self.logfile, "ab")
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.tmpdir,
                start_new_session=True,
                preexec_fn=preexec,
            )
        finally:
            log.close()
        pidfile = os.path.join(self.datadir, "postmaster.pid")
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                with open(pidfile) as f:
                    lines = f.read().splitlines()
                if len(lines) >= 8 and lines[7].strip() == "ready" and int(lines[0]) == self._proc.pid:
                    return
            except (OSError, ValueError):
                pass
            if self._proc.poll() is not None:
                self._proc = None
                raise RuntimeError("postgres exited during startup" + self._log_tail())
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres not ready after {self.start_timeout}s" + self._log_tail())
            time.sleep(0.01)

    def _read_postmaster_pid(self) -> int | None:
        try:
            with open(os.path.join(self.datadir, "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        pid = proc.pid if proc is not None else None
        if pid is not None and proc.poll() is None:
            try:
                subprocess.run(
                    self._as_pg(
                        os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "-m", "fast", "-w", "-t", "10", "stop"
                    ),
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=20,
                    cwd="/",
                )
            except (subprocess.TimeoutExpired, OSError):
                pass
            # SIGINT = PostgreSQL "fast" shutdown (what pg_ctl stop -m fast sends)
            terminate_pid(pid, timeout=10, sig=signal.SIGINT)
            if proc.poll() is None:
                terminate_pid(pid, timeout=5, sig=signal.SIGQUIT)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.pid = None
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
        registry.remove(self)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ databases
    def url(self, dbname: str = "postgres", driver: str = "psycopg") -> str:
        """SQLAlchemy URL, e.g. ``postgresql+psycopg://postgres@127.0.0.1:PORT/name``."""
        return f"postgresql+{driver}://{self.user}@{self.host}:{self.port}/{dbname}"

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq URL (for psycopg.connect / psql)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def _admin_execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql)

    def create_database(self, name: str | None = None, template: str = "template1") -> str:
        """Create a database and return its SQLAlchemy URL."""
        if not self.running:
            raise RuntimeError("PostgresServer is not started")
        name = name or f"test_{uuid.uuid4().hex}"
        if not _DB_NAME_RE.match(name):
            raise ValueError(f"invalid database name {name!r}")
        self._admin_execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        self._databases.append(name)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        if not _DB_NAME_RE.match(name):
            raise ValueError(f"invalid database name {name!r}")
        self._admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self._databases:
            self._databases.remove(name)

    def __repr__(self) -> str:
        return f"<PostgresServer {self.host}:{self.port} dir={self.tmpdir}>"
