"""Monitoring end to end on a drift episode: calm → no trigger, drift → gated retrain → recovery."""

import json
from pathlib import Path

import pytest
from evidently.ui.workspace import Workspace
from typer.testing import CliRunner

from actions.backends import open_ledger
from closedloop.cli import app
from closedloop.models import spec
from closedloop.settings import Settings
from features.pipeline import repository
from features.repo import service_features
from monitoring import episode
from monitoring.pipeline import history, read_log
from monitoring.summary import owner_alert

runner = CliRunner()


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    settings = Settings(home=tmp_path_factory.mktemp("monitoring"))
    episode.prepare(settings)
    return settings


@pytest.fixture(scope="module")
def result(settings):
    return episode.run(settings)


def test_the_calm_week_raises_nothing(result):
    calm = result.runs[0]
    assert not calm.drift.drifted and not calm.trigger.retrain and calm.retrain is None
    assert calm.performance is not None and calm.performance.below_floor is False


def test_the_firmware_update_is_found_in_the_features_it_touches(result):
    drifted = result.runs[1]
    assert drifted.drift.drifted
    touched = {"latency_ms_1h", "latency_ms_24h", "packet_loss_1h", "packet_loss_6h"}
    assert touched <= set(drifted.drift.drifted_columns)
    assert "capacity_mbps" not in drifted.drift.drifted_columns


def test_drift_triggers_a_gated_retrain_that_recovers_performance(result):
    outcomes = [r.retrain for r in result.runs if r.retrain is not None]
    assert outcomes and all(o.retrained for o in outcomes)
    assert any(o.promoted for o in outcomes)
    assert result.final_version != result.first_version
    assert result.pr_auc_final > result.pr_auc_first


def test_the_reports_cover_the_specs_feature_service_in_its_order(settings, result):
    model = spec("fault")
    expected = service_features(repository(settings).services[model.feature_service])
    for run in result.runs:
        assert run.feature_service == model.feature_service
        assert [c.column for c in run.drift.columns] == expected
        assert list(run.quality.missing_share) == expected


def test_runs_leave_reports_a_summary_history_and_workspace(settings, result):
    runs = history(settings, "fault")
    assert [r.run for r in runs] == [r.run for r in result.runs]
    for run in result.runs:
        for report in run.reports.values():
            assert "<html" in Path(report).read_text()[:500].lower()
        folder = settings.home / "monitoring" / "fault" / run.run
        assert json.loads((folder / "summary.json").read_text())["trigger"]["retrain"] == (
            run.trigger.retrain
        )
    workspace = Workspace(str(settings.home / "monitoring" / "workspace"))
    project = workspace.search_project("closedloop-fault")[0]
    assert len(workspace.list_runs(project.id)) >= 2 * len(result.runs)


def test_batch_scores_land_in_the_prediction_log(settings, result):
    first = result.runs[0]
    rows = read_log(settings, "fault", first.champion_version, first.window_start, first.window_end)
    assert len(rows) == first.quality.rows > 0
    assert set(rows["source"]) == {"batch"}


def test_the_commands_score_monitor_without_retraining_and_list_the_history(settings, result):
    home = ["--home", str(settings.home)]
    env = {"COLUMNS": "200"}
    end = ["--end", "2026-02-19T00:00:00"]
    scored = runner.invoke(app, [*home, "monitor-score", "fault", *end, "--days", "7"], env=env)
    assert scored.exit_code == 0, scored.output
    assert f"fault v{result.final_version}: scored" in scored.output
    run = runner.invoke(app, [*home, "monitor", "fault", *end, "--no-retrain"], env=env)
    assert run.exit_code == 0, run.output
    assert "trigger:" in run.output and "reports and summary.json in" in run.output
    last = history(settings, "fault")[-1]
    assert last.champion_version == result.final_version
    assert last.retrain is None or not last.retrain.retrained
    alert = owner_alert(last, spec("fault").owner)
    assert (alert is not None) == ("for network operations opened" in run.output), run.output
    if alert is not None:
        ledger = open_ledger(settings)
        (ticket,) = ledger.decisions(action="trouble_ticket", limit=10)
        ledger.close()
        assert ticket["team"] == "network operations" and ticket["incident"] == alert.incident
    listed = runner.invoke(app, [*home, "monitor-history", "fault"], env=env)
    assert listed.exit_code == 0, listed.output
    assert all(r.run in listed.output for r in history(settings, "fault"))
    assert "evidently ui --workspace" in listed.output
    as_json = runner.invoke(app, [*home, "monitor-history", "fault", "--json"], env=env)
    runs = json.loads(as_json.stdout)
    assert [r["run"] for r in runs] == [r.run for r in history(settings, "fault")]
    assert runs[-1]["champion_version"] == result.final_version


def test_monitoring_without_a_champion_is_one_clear_error(tmp_path):
    outcome = runner.invoke(
        app, ["--home", str(tmp_path), "monitor", "churn", "--end", "2026-02-01"]
    )
    assert outcome.exit_code != 0
    assert "no champion" in str(outcome.exception) or "no champion" in outcome.output
