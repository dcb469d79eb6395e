"""The dunning policy file: the default is the seeds' schedule; every error names its field path."""

from __future__ import annotations

import copy

import pytest
import yaml

from billing_pipeline.domain.dunning_policy import Audience, CatchUp, DunningPolicyError, StepAction, parse_policy
from billing_pipeline.services.collections.policy import DEFAULT_POLICY_FILE, load_policy


def test_the_default_policy_is_the_seeds_schedule():
    policy = load_policy()
    assert policy.version == 1 and policy.catch_up is CatchUp.MOST_SEVERE
    assert [(s.code, s.offset_days) for s in policy.steps] == [
        ("upcoming", -7),
        ("overdue", 1),
        ("escalation_7", 7),
        ("escalation_14", 14),
        ("final_30", 30),
    ]
    managers = [s.code for s in policy.steps if any(n.audience is Audience.ACCOUNT_MANAGER for n in s.notify)]
    assert managers == ["escalation_14", "final_30"]
    assert {n.channels for s in policy.steps for n in s.notify} == {("email",)}
    assert all(s.action is StepAction.NONE for s in policy.steps)


def _default() -> dict:
    return yaml.safe_load(DEFAULT_POLICY_FILE.read_text())


def _broken(path: list, value) -> dict:
    doc = copy.deepcopy(_default())
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["version"], 0, "version: must be an integer from 1"),
        (["version"], KeyError, "version: is required"),
        (["catch_up"], "sometimes", "catch_up: must be one of most_severe | all_missed"),
        (["steps"], [], "steps: must list at least one step"),
        (["steps", 1, "offset_days"], -7, "steps[1].offset_days: -7 is also steps[0]'s"),
        (["steps", 2, "offset_days"], 0, "steps[2].offset_days: steps must be listed in increasing offset order"),
        (["steps", 1, "offset_days"], "1", "steps[1].offset_days: must be a whole number of days"),
        (["steps", 1, "code"], "upcoming", "steps[1].code: 'upcoming' is also steps[0]'s"),
        (["steps", 1, "code"], "Over Due", "steps[1].code: must be 1-40 characters of a-z 0-9 _"),
        (["steps", 4, "action"], "cancel", "steps[4].action: must be one of none | mark_invoice_uncollectible"),
        (["steps", 3, "notify", 1, "audience"], "boss", "steps[3].notify[1].audience: must be one of customer"),
        (["steps", 3, "notify", 1, "audience"], "customer", "steps[3].notify[1].audience: customer is listed twice"),
        (["steps", 0, "notify", 0, "channels"], ["fax"], "steps[0].notify[0].channels[0]: must be one of email"),
        (["steps", 0, "notify", 0, "channels"], [], "steps[0].notify[0].channels: must name at least one channel"),
        (["steps", 0, "notify", 0, "template"], "../x", "steps[0].notify[0].template: must be 1-64 characters"),
        (["steps", 0, "notify", 0, "colour"], "red", "steps[0].notify[0].colour: unknown field"),
        (["steps", 0, "notify"], [], "steps[0].notify: must name at least one audience"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_field(path, value, message):
    with pytest.raises(DunningPolicyError) as excinfo:
        parse_policy(_broken(path, value), "dunning.yaml")
    assert str(excinfo.value).startswith("dunning.yaml: ")
    assert message in str(excinfo.value)


def test_a_template_without_files_is_refused_with_its_path(tmp_path):
    doc = _broken(["steps", 2, "notify", 0, "template"], "reminder_missing")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(DunningPolicyError, match=r"steps\[2\]\.notify\[0\]\.template: no template reminder_missing"):
        load_policy(tmp_path / "p.yaml")


def test_bad_yaml_names_the_line(tmp_path):
    (tmp_path / "p.yaml").write_text("version: 1\nsteps: [\n")
    with pytest.raises(DunningPolicyError, match=r"p\.yaml:3: not valid YAML"):
        load_policy(tmp_path / "p.yaml")


def test_an_action_is_configurable():
    policy = parse_policy(_broken(["steps", 4, "action"], "suspend_organization"))
    assert policy.steps[-1].action is StepAction.SUSPEND_ORGANIZATION
