"""Reading the dunning policy file (YAML) into a validated ``DunningPolicy``."""

from __future__ import annotations

from pathlib import Path

import yaml

from billing_pipeline import yaml_input
from billing_pipeline.domain.dunning_policy import DunningPolicy, DunningPolicyError, parse_policy
from billing_pipeline.rendering.reminders import missing_templates

DEFAULT_POLICY_FILE = Path(__file__).resolve().parents[2] / "catalog" / "dunning.yaml"
MAX_POLICY_BYTES = 1 << 20


def load_policy(path: Path | str | None = None) -> DunningPolicy:
    """The policy in ``path`` (default: the packaged ``catalog/dunning.yaml``).

    ``DunningPolicyError`` names the file and the field path (or YAML line) of the problem,
    including a template the policy names that has no ``.txt.j2``/``.html.j2`` file.
    """
    source = Path(path) if path is not None else DEFAULT_POLICY_FILE
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise DunningPolicyError(f"{source}: cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_POLICY_BYTES:
        raise DunningPolicyError(f"{source}: larger than {MAX_POLICY_BYTES} bytes")
    try:
        document = yaml_input.load(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DunningPolicyError(f"{source}: not UTF-8 (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise DunningPolicyError(f"{source}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    policy = parse_policy(document, str(source))
    for i, step in enumerate(policy.steps):
        for j, notice in enumerate(step.notify):
            missing = missing_templates({notice.template})
            if missing:
                raise DunningPolicyError(
                    f"{source}: steps[{i}].notify[{j}].template: no template {notice.template} "
                    f"(missing {', '.join(missing)} in rendering/templates)"
                )
    return policy


def check_channels(policy: DunningPolicy, configured: set[str], source: Path | str | None = None) -> None:
    """Refuse a policy naming a channel this deployment cannot send (``sms`` with ``SMS_PROVIDER=none``).

    Checked when the definitions load, so a misconfiguration stops the code location with the
    field path instead of dead-lettering every organization's notice at send time.
    """
    where = Path(source) if source is not None else DEFAULT_POLICY_FILE
    for i, step in enumerate(policy.steps):
        for j, notice in enumerate(step.notify):
            for k, channel in enumerate(notice.channels):
                if channel not in configured:
                    hint = " (set SMS_PROVIDER=twilio and the TWILIO_* variables)" if channel == "sms" else ""
                    raise DunningPolicyError(
                        f"{where}: steps[{i}].notify[{j}].channels[{k}]: {channel} is not configured{hint}"
                    )
