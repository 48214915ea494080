"""Policy YAML: the default policy is valid and complete; bad policies name rule and field."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from actions.policy import ActionType, PolicyError, available_runbooks, load_policy, parse_policy

DEFAULT = load_policy(None)


def _broken(edit) -> str:
    raw = DEFAULT.model_dump(mode="json")
    edit(raw)
    return yaml.safe_dump(raw)


def test_default_policy_covers_every_action_with_a_runbook():
    assert {rule.action.type for rule in DEFAULT.rules} == set(ActionType)
    assert {rule.runbook for rule in DEFAULT.rules} <= available_runbooks()
    assert set(available_runbooks()) >= {a.value for a in ActionType}


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda p: p["rules"][3]["threshold"].update(gold=1.5), "rules[3].threshold: "),
        (lambda p: p["rules"][2]["threshold"].pop("default"), "rules[2].threshold: needs"),
        (lambda p: p["rules"][1]["action"].update(type="fax"), "rules[1].action.type: "),
        (lambda p: p["rules"][4].update(runbook="nope"), "rules[4].runbook: no runbook 'nope'"),
        (lambda p: p["rules"][0].update(colour="red"), "rules[0].colour: Extra inputs"),
        (lambda p: p["guards"]["cooldown_hours"].update(fax=3), "guards.cooldown_hours.fax"),
        (lambda p: p["rules"][5].update(id=p["rules"][0]["id"]), "is used twice"),
    ],
)
def test_bad_policy_errors_point_at_rule_and_field(edit, expected):
    with pytest.raises(PolicyError) as raised:
        parse_policy(_broken(edit), "bad.yaml")
    assert any(expected in problem for problem in raised.value.problems), raised.value.problems


def test_yaml_syntax_error_is_one_clear_problem():
    with pytest.raises(PolicyError, match="not valid YAML"):
        parse_policy("rules: [\n", "broken.yaml")


def test_priority_rises_with_value_at_risk():
    assert DEFAULT.priority(50_000) == 1
    assert DEFAULT.priority(5_000) == 2
    assert DEFAULT.priority(10) == 4


def test_policy_check_command_lints_and_exits_2_with_located_lines(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        _broken(lambda p: (p["rules"][3]["threshold"].update(gold=2), p["rules"][1].pop("target")))
    )
    good = tmp_path / "good.yaml"
    good.write_text(_broken(lambda p: None))
    run = [sys.executable, "-m", "closedloop", "policy", "check"]
    failed = subprocess.run([*run, str(bad)], capture_output=True, text=True, timeout=120)
    passed = subprocess.run([*run, str(good)], capture_output=True, text=True, timeout=120)
    assert failed.returncode == 2
    assert "rules[3].threshold:" in failed.stderr and "rules[1].target:" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 2
    assert "Traceback" not in failed.stderr
    assert passed.returncode == 0 and "9 rules" in passed.stdout
