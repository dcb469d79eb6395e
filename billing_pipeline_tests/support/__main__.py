"""Start local servers and print their settings as JSON; stop them on Ctrl-C / SIGTERM.

python -m billing_pipeline_tests.support            # all four
python -m billing_pipeline_tests.support pg stripe  # a subset
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from contextlib import ExitStack

from . import PostgresServer, S3Server, SMTPServer, StripeServer


def main(argv: list[str]) -> int:
    wanted = set(argv) or {"pg", "s3", "stripe", "smtp"}
    unknown = wanted - {"pg", "s3", "stripe", "smtp"}
    if unknown:
        print(f"unknown server(s): {', '.join(sorted(unknown))}; choose from pg s3 stripe smtp", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    info: dict = {}
    with ExitStack() as stack:
        if "pg" in wanted:
            pg = stack.enter_context(PostgresServer())
            info["postgres"] = {
                "url": pg.create_database("billing"),
                "host": pg.host,
                "port": pg.port,
                "startup_seconds": round(pg.startup_seconds, 3),
            }
        if "s3" in wanted:
            s3 = stack.enter_context(S3Server())
            info["s3"] = {
                "endpoint_url": s3.endpoint_url,
                "access_key": s3.access_key,
                "secret_key": s3.secret_key,
                "region": s3.region,
                "startup_seconds": round(s3.startup_seconds, 3),
            }
        if "stripe" in wanted:
            st = stack.enter_context(StripeServer())
            info["stripe"] = {
                "api_base": st.api_base,
                "api_key": st.api_key,
                "startup_seconds": round(st.startup_seconds, 3),
            }
        if "smtp" in wanted:
            sm = stack.enter_context(SMTPServer(require_auth=True, starttls=True))
            info["smtp"] = {
                **sm.smtp_settings(),
                "cert_path": sm.cert_path,
                "startup_seconds": round(sm.startup_seconds, 3),
            }
        print(json.dumps(info, indent=2), flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
