"""One auto-charge run in this process, as its schedule launches it; optionally SIGKILLed at a charge.

    python -m billing_pipeline_tests.support.charge_run AS_OF [--kill before-charge|after-charge]

The project's own definitions (``billing_pipeline.definitions``: settings read from the environment,
the resources ``resources(settings)`` picks) materialize the ``auto_charges`` asset with the run config
the schedule gives it (``as_of``), on an ephemeral instance. The last line printed is
``charge-run: {metadata as JSON}``.

``--kill`` is the crash tests' hook, and it lives here, not in the project: the payment gateway
resource is wrapped so that the process sends itself SIGKILL (no ``finally``, no rollback, no
atexit: the kernel ends it) at one point of the first charge:

* ``before-charge``: when ``charge_invoice`` is called, i.e. the attempt's ``pending`` ledger row is
  committed and the gateway has not been asked;
* ``after-charge``: when ``charge_invoice`` has returned the gateway's answer (the money is taken),
  before the answer is written to the ledger.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

import dagster as dg

from billing_pipeline.defs.delivery_resources import StripePaymentGatewayResource

KILL_POINTS = ("before-charge", "after-charge")


class KillAtCharge:
    """A payment gateway that SIGKILLs this process around ``charge_invoice`` (see the module docstring)."""

    def __init__(self, gateway, point: str) -> None:
        if point not in KILL_POINTS:
            raise ValueError(f"kill point must be one of {KILL_POINTS}, got {point!r}")
        self._gateway = gateway
        self._point = point

    def __getattr__(self, name):
        return getattr(self._gateway, name)

    def charge_invoice(self, *args, **kwargs):
        if self._point == "before-charge":
            _die()
        result = self._gateway.charge_invoice(*args, **kwargs)
        _die()
        return result  # never reached


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class KillingStripeGatewayResource(StripePaymentGatewayResource):
    """``StripePaymentGatewayResource`` whose gateway is wrapped in ``KillAtCharge``."""

    kill_at: str

    def gateway(self):
        return KillAtCharge(super().gateway(), self.kill_at)


def run(as_of: str, kill_at: str | None) -> dict:
    from billing_pipeline import definitions

    settings = definitions.settings
    resources = definitions.resources(settings)
    needed = {k: resources[k] for k in ("billing_db", "payment_gateway", "mailer")}
    if kill_at:
        real = needed["payment_gateway"]
        if not isinstance(real, StripePaymentGatewayResource):
            raise SystemExit("--kill needs PAYMENT_GATEWAY=stripe")
        needed["payment_gateway"] = KillingStripeGatewayResource(
            api_key=dg.EnvVar("STRIPE_API_KEY"),
            api_base=real.api_base,
            requests_per_second=real.requests_per_second,
            kill_at=kill_at,
        )
    asset = definitions.auto_charges
    result = dg.materialize(
        [asset],
        resources=needed,
        run_config={"ops": {asset.op.name: {"config": {"as_of": as_of}}}},
        instance=dg.DagsterInstance.ephemeral(),
    )
    [materialization] = result.asset_materializations_for_node(asset.op.name)
    return {key: value.value for key, value in materialization.metadata.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="charge_run", description=__doc__.split("\n\n")[0])
    parser.add_argument("as_of", help="the run's instant, ISO with offset (2026-03-15T06:00:00+00:00)")
    parser.add_argument("--kill", choices=KILL_POINTS, help="SIGKILL this process at that point of the first charge")
    args = parser.parse_args(argv)
    metadata = run(args.as_of, args.kill)
    print("charge-run: " + json.dumps(metadata, sort_keys=True, default=str), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
