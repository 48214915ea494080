"""The closedloop command, run as a user runs it."""

import json

import pytest
from cli_run import run_cli
from typer.testing import CliRunner

from closedloop.cli import app
from closedloop.world.store import read_summary

runner = CliRunner()


def test_world_generate_writes_the_world_and_prints_its_summary(tmp_path):
    result = run_cli(
        "world", "generate", "--customers", "400", "--days", "10", "--seed", "3", home=tmp_path
    )
    assert result.returncode == 0, result.stderr
    summary = read_summary(tmp_path / "world")
    assert summary.customers == 400 and summary.days == 10
    assert "telemetry_zenith" in result.stdout and "churn per 30 days" in result.stdout
    as_json = runner.invoke(app, ["--home", str(tmp_path), "world", "summary", "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == summary.model_dump(mode="json")


def test_params_file_sets_defaults_and_options_override_it(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("world:\n  customers: 250\n  days: 9\n  seed: 5\n")
    result = runner.invoke(
        app, ["--home", str(tmp_path), "world", "generate", "--params", str(params), "--days", "8"]
    )
    assert result.exit_code == 0, result.output
    summary = read_summary(tmp_path / "world")
    assert (summary.customers, summary.days) == (250, 8)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["world", "generate", "--customers", "10"],
            "customers: Input should be greater than or equal to 50",
        ),
        (["world", "generate", "--interval-minutes", "7"], "must divide a day"),
        (["world", "generate", "--start", "2026-02-30"], "--start must be a date"),
        (["world", "generate", "--params", "missing.yaml"], "params file not found"),
        (["world", "schema", "nosuchtable"], "unknown table 'nosuchtable'"),
        (["world", "summary"], "no world in"),
    ],
)
def test_bad_arguments_give_one_clear_line_and_exit_2(tmp_path, args, message):
    result = run_cli(*args, home=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_profile_in_the_environment_is_named(tmp_path):
    result = run_cli("settings", home=tmp_path, env={"CLOSEDLOOP_PROFILE": "k8s"})
    assert result.returncode == 2
    assert "CLOSEDLOOP_" in result.stderr and "profile" in result.stderr


def test_wrongly_typed_option_is_refused_by_the_parser(tmp_path):
    result = run_cli("world", "generate", "--customers", "many", home=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--customers" in result.stderr


def test_every_command_has_help():
    for args in (
        [],
        ["world"],
        ["world", "generate"],
        ["world", "schema"],
        ["world", "summary"],
        ["demo"],
        ["settings"],
        ["version"],
        ["policy", "check"],
        ["replay"],
        ["actions", "list"],
        ["actions", "approve"],
        ["audit"],
        ["audit", "verify"],
    ):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, args
        assert "Usage" in result.output


def test_settings_show_the_profiles_backends(tmp_path):
    result = runner.invoke(app, ["--home", str(tmp_path), "--profile", "cluster", "settings"])
    assert result.exit_code == 0
    assert "redis" in result.output and "postgresql" in result.output


def test_schema_prints_documented_columns():
    result = runner.invoke(app, ["world", "schema", "telemetry_zenith"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "RTT_AVG_US" in result.output and "µs" in result.output
    as_json = runner.invoke(app, ["world", "schema", "telemetry_zenith", "--json"])
    [table] = json.loads(as_json.stdout)
    columns = {c["name"]: c for c in table["columns"]}
    assert table["table"] == "telemetry_zenith" and "µs" in columns["RTT_AVG_US"]["description"]
    every = json.loads(runner.invoke(app, ["world", "schema", "--json"]).stdout)
    assert len(every) > 1 and table in every
