"""In-memory SMTP server (aiosmtpd) for tests: AUTH, STARTTLS or implicit TLS, fault injection.

    with SMTPServer(require_auth=True, starttls=True) as smtp:
        with smtplib.SMTP(smtp.host, smtp.port) as c:
            c.starttls(); c.login(smtp.username, smtp.password); c.send_message(msg)
        smtp.messages[0].message["Subject"]

Runs an aiosmtpd ``Controller`` (its own thread and event loop) on 127.0.0.1 at a free port
picked by us (port 0 does not work with the Controller's readiness probe).  The TLS
certificate is self-signed for ``localhost``/``127.0.0.1``, generated at start with
``cryptography`` when importable, else with the ``openssl`` CLI.  Clients that verify
certificates can use ``client_ssl_context()``.

``SMTPServerProcess`` runs the same server in a child process (``python -m
billing_pipeline_tests.support.smtp``) so that a test can SIGSTOP, SIGCONT or SIGKILL it and
start it again on the same port with the same certificate; every accepted message is written
to a folder (the server's "mail log"), counted with ``message_ids()``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import email
import email.policy
import functools
import json
import logging
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from ._util import LOCALHOST, free_port, port_is_open, registry, wait_until

# aiosmtpd 1.4 logs a warning on every successful AUTH about its own legacy attribute, and
# warns when AUTH is required without STARTTLS (deliberate here: implicit TLS or plain test mode).
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS", category=UserWarning)


class _QuietAiosmtpdLog(logging.Filter):
    _noise = ("Session.login_data is deprecated", "auth_required == True but auth_require_tls == False")

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(n in record.getMessage() for n in self._noise)


logging.getLogger("mail.log").addFilter(_QuietAiosmtpdLog())


@dataclass
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: tuple | None = None
    login: str | None = None
    tls: bool = False
    received_at: float = field(default_factory=time.time)

    @functools.cached_property
    def message(self) -> EmailMessage:
        """The parsed message (parsed on first use: a mail server does not parse MIME either)."""
        return email.message_from_bytes(self.data, policy=email.policy.default)

    @property
    def subject(self) -> str | None:
        return self.message["Subject"]


def generate_self_signed_cert(directory: str, common_name: str = "localhost") -> tuple[str, str]:
    """Write cert.pem/key.pem for localhost + 127.0.0.1 into *directory*; return their paths."""
    cert_path = os.path.join(directory, "cert.pem")
    key_path = os.path.join(directory, "key.pem")
    try:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        openssl = shutil.which("openssl")
        if not openssl:
            raise RuntimeError(
                "Need either the 'cryptography' Python package or the 'openssl' CLI "
                "(apt-get install openssl) to create a TLS certificate for the SMTP test server."
            ) from None
        subprocess.run(
            [
                openssl,
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                key_path,
                "-out",
                cert_path,
                "-days",
                "2",
                "-subj",
                f"/CN={common_name}",
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
            ],
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
        )
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


class _Handler:
    def __init__(self, server: SMTPServer) -> None:
        self.server = server

    async def handle_RCPT(self, smtpd, session, envelope, address, rcpt_options):
        err = self.server._take_fault("RCPT")
        if err:
            return err
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtpd, session, envelope):
        err = self.server._take_fault("DATA")
        if err:
            return err
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        login = session.auth_data.login if session.authenticated and session.auth_data is not None else None
        if isinstance(login, bytes):
            login = login.decode("utf-8", "replace")
        rec = ReceivedMessage(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            data=data,
            peer=session.peer,
            login=login,
            tls=session.ssl is not None or self.server.implicit_tls,
        )
        with self.server._cond:
            self.server.messages.append(rec)
            self.server._cond.notify_all()
        self.server._record(data)
        if self.server.data_delay:  # the message is in; the reply is not (the ambiguous window)
            await asyncio.sleep(self.server.data_delay)
        return "250 Message accepted for delivery"


def _controller_class():
    from aiosmtpd.controller import Controller

    class _Ctrl(Controller):
        def __init__(self, *args, lift_auth_tls: bool = False, **kwargs):
            self._lift_auth_tls = lift_auth_tls
            super().__init__(*args, **kwargs)

        def factory(self):
            smtp = super().factory()
            if self._lift_auth_tls:
                smtp._auth_require_tls = False  # implicit TLS / plain test mode: offer AUTH anyway
            return smtp

    return _Ctrl


def _Controller(*args, **kwargs):
    return _controller_class()(*args, **kwargs)


class SMTPServer:
    """Capturing SMTP server.  Usable as a context manager."""

    def __init__(
        self,
        *,
        require_auth: bool = False,
        username: str = "billing",
        password: str = "s3cret-pass",
        starttls: bool = False,
        require_starttls: bool | None = None,
        implicit_tls: bool = False,
        port: int | None = None,
        hostname: str = "localhost",
        cert: tuple[str, str] | None = None,
        record_dir: str | None = None,
        data_delay: float = 0.0,
    ) -> None:
        """``cert``: (cert.pem, key.pem) to use instead of a new one; ``record_dir``: write each
        accepted message there; ``data_delay``: seconds between taking a message and replying."""
        if starttls and implicit_tls:
            raise ValueError("choose starttls=True or implicit_tls=True, not both")
        self.host = LOCALHOST
        self._requested_port = port
        self.port: int | None = None
        self.require_auth = require_auth
        self.username = username
        self.password = password
        self.starttls = starttls
        self.require_starttls = starttls if require_starttls is None else require_starttls
        self.implicit_tls = implicit_tls
        self.server_hostname = hostname
        self.messages: list[ReceivedMessage] = []
        self.auth_attempts: list[tuple[str, bool]] = []  # (login, success)
        self.cert_path: str | None = None
        self.key_path: str | None = None
        self.startup_seconds: float | None = None
        self._tmpdir: str | None = None
        self._controller = None
        self._cond = threading.Condition()
        self._faults: list[tuple[str, str]] = []
        self._given_cert = cert
        self.record_dir = record_dir
        self.data_delay = data_delay

    def _record(self, data: bytes) -> None:
        if self.record_dir:
            path = os.path.join(self.record_dir, f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml")
            with open(path + ".tmp", "wb") as f:
                f.write(data)
            os.replace(path + ".tmp", path)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> SMTPServer:
        if self._controller is not None:
            return self
        t0 = time.monotonic()
        registry.add(self)
        try:
            tls_ctx = None
            if (self.starttls or self.implicit_tls) and self._given_cert:
                self.cert_path, self.key_path = self._given_cert
            elif self.starttls or self.implicit_tls:
                self._tmpdir = tempfile.mkdtemp(prefix="billing-smtp-")
                self.cert_path, self.key_path = generate_self_signed_cert(self._tmpdir)
            if self.cert_path:
                tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                tls_ctx.load_cert_chain(self.cert_path, self.key_path)
            kwargs = dict(
                hostname=self.host,
                server_hostname=self.server_hostname,
                ready_timeout=10.0,
                decode_data=False,
                enable_SMTPUTF8=True,
            )
            if self.require_auth:
                # With implicit TLS the whole connection is encrypted, but aiosmtpd only counts
                # STARTTLS when deciding whether to offer AUTH: _Controller lifts that after init.
                kwargs.update(authenticator=self._authenticate, auth_required=True, auth_require_tls=True)
            else:
                kwargs.update(authenticator=self._authenticate, auth_required=False, auth_require_tls=False)
            if self.starttls:
                kwargs.update(tls_context=tls_ctx, require_starttls=self.require_starttls)
            if self.implicit_tls:
                kwargs.update(ssl_context=tls_ctx)
            last: Exception | None = None
            for _ in range(5):
                self.port = self._requested_port or free_port()
                controller = _Controller(
                    _Handler(self), port=self.port, lift_auth_tls=self.implicit_tls or not self.starttls, **kwargs
                )
                try:
                    controller.start()
                    self._controller = controller
                    break
                except Exception as e:  # port grabbed meanwhile
                    last = e
                    try:
                        controller.stop()
                    except Exception:
                        pass
                    if self._requested_port:
                        raise
            else:
                raise RuntimeError(f"could not start SMTP server: {last}")
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        if self._controller is not None:
            try:
                self._controller.stop()
            except Exception:
                pass
            self._controller = None
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        registry.remove(self)

    def __enter__(self) -> SMTPServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ auth
    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        ok = login == self.username and auth_data.password.decode("utf-8", "replace") == self.password
        self.auth_attempts.append((login, ok))
        # handled=False lets aiosmtpd send "535 5.7.8 Authentication credentials invalid" (else clients hang)
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    # ------------------------------------------------------------------ faults & inspection
    def fail_next(self, n: int = 1, code: int = 451, stage: str = "DATA", message: str | None = None) -> None:
        """Answer the next *n* DATA (or RCPT) commands with *code* (default 451, a transient error)."""
        stage = stage.upper()
        if stage not in ("DATA", "RCPT"):
            raise ValueError("stage must be 'DATA' or 'RCPT'")
        text = message or (
            "4.3.0 Requested action aborted: injected transient failure"
            if 400 <= code < 500
            else "5.3.0 Requested action not taken: injected failure"
        )
        with self._cond:
            self._faults.extend([(stage, f"{code} {text}")] * n)

    def _take_fault(self, stage: str) -> str | None:
        with self._cond:
            for i, (s, reply) in enumerate(self._faults):
                if s == stage:
                    del self._faults[i]
                    return reply
        return None

    def clear(self) -> None:
        """Forget received messages, auth attempts and pending faults."""
        with self._cond:
            self.messages.clear()
            self.auth_attempts.clear()
            self._faults.clear()

    def wait_for_messages(self, n: int = 1, timeout: float = 5.0) -> list[ReceivedMessage]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"expected {n} message(s), got {len(self.messages)}")
                self._cond.wait(left)
            return list(self.messages)

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts this server's self-signed certificate."""
        if not self.cert_path:
            raise RuntimeError("server has no TLS enabled")
        return ssl.create_default_context(cafile=self.cert_path)

    def smtp_settings(self) -> dict:
        """Connection settings in a shape convenient for app config."""
        return {
            "host": self.host,
            "port": self.port,
            "username": self.username if self.require_auth else None,
            "password": self.password if self.require_auth else None,
            "starttls": self.starttls,
            "ssl": self.implicit_tls,
        }

    def __repr__(self) -> str:
        mode = "starttls" if self.starttls else ("ssl" if self.implicit_tls else "plain")
        return f"<SMTPServer {self.host}:{self.port} {mode} auth={self.require_auth}>"


class SMTPServerProcess:
    """``SMTPServer(require_auth=True, starttls=True)`` in a child process: ``pause`` (SIGSTOP),
    ``resume`` (SIGCONT), ``kill`` (SIGKILL) and ``start`` again on the same port and
    certificate. Accepted messages are files in ``record_dir`` (they survive a kill)."""

    def __init__(self, *, data_delay: float = 0.0, username: str = "billing", password: str = "s3cret-pass") -> None:
        self.host = LOCALHOST
        self.username = username
        self.password = password
        self.data_delay = data_delay
        self.tmpdir = tempfile.mkdtemp(prefix="billing-smtp-proc-")
        self.record_dir = os.path.join(self.tmpdir, "received")
        os.makedirs(self.record_dir)
        self.cert_path, self.key_path = generate_self_signed_cert(self.tmpdir)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> SMTPServerProcess:
        if self.proc is not None and self.proc.poll() is None:
            return self
        args = [sys.executable, "-m", "billing_pipeline_tests.support.smtp", "--port", str(self.port)]
        args += ["--cert", self.cert_path, "--key", self.key_path, "--record-dir", self.record_dir]
        args += ["--data-delay", str(self.data_delay), "--username", self.username, "--password", self.password]
        log = open(os.path.join(self.tmpdir, "smtp.log"), "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_until(lambda: port_is_open(self.port), timeout=20, what="SMTP server process", proc=self.proc)
        registry.add(self)
        return self

    def _signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a stopped process does not die on SIGKILL at once
            self._signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        registry.remove(self)

    def __enter__(self) -> SMTPServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def messages(self) -> list[EmailMessage]:
        """Every message the server accepted, oldest first (across restarts)."""
        paths = sorted(p for p in Path(self.record_dir).iterdir() if p.suffix == ".eml")
        return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in paths]

    def message_ids(self) -> collections.Counter:
        return collections.Counter(str(m["Message-ID"]) for m in self.messages())


def main(argv: list[str]) -> int:
    """The child of ``SMTPServerProcess``: serve until SIGTERM/SIGKILL."""
    parser = argparse.ArgumentParser(prog="python -m billing_pipeline_tests.support.smtp")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--record-dir", required=True)
    parser.add_argument("--data-delay", type=float, default=0.0)
    parser.add_argument("--username", default="billing")
    parser.add_argument("--password", default="s3cret-pass")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server = SMTPServer(
        require_auth=True,
        starttls=True,
        port=args.port,
        username=args.username,
        password=args.password,
        cert=(args.cert, args.key),
        record_dir=args.record_dir,
        data_delay=args.data_delay,
    )
    with server:
        print(json.dumps({**server.smtp_settings(), "cert_path": server.cert_path}), flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
