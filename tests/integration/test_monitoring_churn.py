"""The churn side of monitoring end to end: a small world whose prices rise in one region.

Before the change the weekly window raises nothing and the trailing windows still filling are
listed as not compared (the false alarms of a calm world); after it the price features drift
where the change is, and without matured labels (30 days) drift never retrains at once.
"""

from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from closedloop.cli import app
from closedloop.settings import Settings
from closedloop.world.config import Drift, PriceChange, WorldConfig
from monitoring import episode
from monitoring.config import MonitorConfig
from monitoring.pipeline import monitor, score_window
from training.config import LightGBMParams, churn_defaults
from training.pipeline import train

CHANGE_DAY = 49
WORLD = WorldConfig(
    customers=1_200,
    days=63,
    seed=5,
    customers_per_cell=10,
    drift=Drift(price=PriceChange(region="central", day=CHANGE_DAY, factor=1.25)),
)
START = datetime(2026, 1, 1, tzinfo=UTC)
TRAINING = churn_defaults().model_copy(
    update={"lightgbm": LightGBMParams(num_boost_round=100, early_stopping_rounds=10)}
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    settings = Settings(home=tmp_path_factory.mktemp("churn-monitoring"))
    episode.prepare(settings, WORLD)
    train(settings, "churn", TRAINING, until=START + timedelta(days=42))
    out = []
    for day in (CHANGE_DAY, CHANGE_DAY + 7, CHANGE_DAY + 14):
        end = START + timedelta(days=day)
        score_window(settings, "churn", end - timedelta(days=7), end)
        out.append(monitor(settings, "churn", MonitorConfig(), end, TRAINING))
    return settings, out


def test_the_week_before_the_change_raises_nothing_and_lists_what_is_not_comparable(runs):
    _, (before, _, _) = runs
    assert not before.drift.drifted and not before.trigger.retrain and before.retrain is None
    skipped = {c.column: c.note for c in before.drift.columns if not c.compared}
    assert {"late_invoices_90d", "credits_90d", "tickets_30d"} <= set(skipped)
    assert "90-day window" in skipped["late_invoices_90d"]
    assert "price_ratio" not in before.drift.drifted_columns
    kinds = {c.column: c.kind for c in before.drift.columns}
    assert (kinds["contract_months_left"], kinds["outage_minutes_7d"]) == ("clock", "sparse")


def test_after_the_change_the_price_drifts_and_nothing_retrains_without_labels(runs):
    _, (_, after, later) = runs
    for run in (after, later):
        ratio = next(c for c in run.drift.columns if c.column == "price_ratio")
        assert ratio.drifted and ratio.score > 0.15
        assert run.performance is None or run.performance.matured_until < START + timedelta(
            days=CHANGE_DAY
        )
        assert not run.trigger.retrain and run.retrain is None
    if after.drift.drifted and later.drift.drifted:
        assert later.trigger.held  # persisted, waiting for the labels of the drifted weeks


def test_the_command_prints_what_it_did_not_compare(runs):
    settings, _ = runs
    end = (START + timedelta(days=CHANGE_DAY + 14)).strftime("%Y-%m-%dT%H:%M:%S")
    out = CliRunner().invoke(
        app,
        ["--home", str(settings.home), "monitor", "churn", "--end", end, "--no-retrain"],
        env={"COLUMNS": "200"},
    )
    assert out.exit_code == 0, out.output
    assert "not compared" in out.output and "late_invoices_90d" in out.output
