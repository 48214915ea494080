"""params.yaml, parsed once into one typed model: sections over the stages' defaults, and a
bad file refused with one line naming the file and the wrong key."""

import subprocess
import sys
from pathlib import Path

import pytest

from closedloop.params import Params, load_params
from closedloop.terminal import UserError
from closedloop.world.config import WorldConfig
from monitoring.config import MonitorConfig
from training.config import churn_defaults, fault_defaults

REPO = Path(__file__).resolve().parents[3]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_no_file_gives_every_stages_defaults():
    params = load_params(None)
    assert params.world == WorldConfig()
    assert params.train("churn") == churn_defaults()
    assert params.train("fault") == fault_defaults()
    assert params.monitor == MonitorConfig()


def test_the_projects_params_file_parses():
    params = load_params(REPO / "params.yaml")
    assert params.world.customers == 4000
    assert params.train("churn").horizon_hours == 720
    assert params.train("fault").action_budget == 20
    assert params.monitor.persistence == 2


def test_params_file_overrides_only_what_it_names(tmp_path):
    path = write(
        tmp_path, "train_churn:\n  lightgbm: {learning_rate: 0.2}\n  gate: {margin: 0.01}\n"
    )
    config = load_params(path).train("churn")
    assert config.lightgbm.learning_rate == 0.2 and config.gate.margin == 0.01
    assert config.lightgbm.num_leaves == churn_defaults().lightgbm.num_leaves
    assert config.increasing == churn_defaults().increasing
    assert load_params(path).train("fault") == fault_defaults()


def test_params_monitor_section_is_validated(tmp_path):
    text = (
        "monitor:\n  persistence: 3\n  drift:\n    kinds: {sparse: {method: psi, threshold: 0.2}}\n"
        "    features: {tenure_months: {method: wasserstein, threshold: 0.5}}\n"
    )
    config = load_params(write(tmp_path, text)).monitor
    assert (config.persistence, config.window_days) == (3, 7)
    assert config.drift.test("outage_minutes_7d", "sparse").method == "psi"
    assert config.drift.test("tenure_months", "clock").threshold == 0.5
    assert config.drift.test("mrr", "level").method == "wasserstein"  # the other kinds keep theirs
    path = write(tmp_path, "monitor:\n  drift: {kinds: {level: {method: ks, threshold: 0.1}}}\n")
    with pytest.raises(UserError, match=r"monitor\.drift\.kinds\.level\.method"):
        load_params(path)
    with pytest.raises(UserError, match="params file not found"):
        load_params(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("train_fault:\n  lightgbm: {learning_rate: -1}\n", "train_fault.lightgbm.learning_rate"),
        ("train_churn:\n  split: {train: 0.9}\n", "train_churn.split"),
        ("world:\n  customers: 3\n", "world.customers"),
        ("world:\n  custmers: 300\n", "world.custmers"),
        ("trian_churn:\n  tune: {trials: 2}\n", "trian_churn"),
        ("monitor: 7\n", "monitor"),
        ("- world\n", "expected a mapping of sections"),
        ("world: {customers: [\n", "not valid YAML at line"),
    ],
)
def test_a_bad_file_names_the_wrong_key(tmp_path, text, named):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as raised:
        load_params(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and named in message
    assert "\n" not in message


def test_sections_left_empty_keep_their_defaults(tmp_path):
    assert load_params(write(tmp_path, "world:\ntrain_churn:\n")) == Params()


def test_a_bad_params_file_is_one_red_line_and_exit_code_2(tmp_path):
    path = write(tmp_path, "train_churn:\n  gate: {metric: accuracy}\n")
    result = subprocess.run(
        [sys.executable, "-m", "closedloop", "--home", str(tmp_path), "train", "churn",
         "--params", str(path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()], "one line on stderr"
    assert "train_churn.gate.metric" in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
