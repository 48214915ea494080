"""The churn side of monitoring end to end: a small world whose prices rise in one region.

Before the change the weekly window raises nothing and the trailing windows still filling are
listed as not compared; after it `price_ratio` moves far past its threshold while few other
features move, which drifts the window on its own (``drift.severe``); two such windows hold the
trigger, since the 30-day labels that would show the harm have not matured.
"""

from datetime import UTC, datetime, timedelta

import pytest

from closedloop.settings import Settings
from closedloop.world.config import Drift, PriceChange, WorldConfig
from monitoring import episode
from monitoring.config import MonitorConfig
from monitoring.pipeline import monitor, score_window
from training.config import LightGBMParams, churn_defaults
from training.pipeline import train

CHANGE_DAY = 56
WORLD = WorldConfig(
    customers=1_200,
    days=70,
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
    train(settings, "churn", TRAINING, until=START + timedelta(days=CHANGE_DAY - 7))
    out = []
    for day in (CHANGE_DAY, CHANGE_DAY + 7, CHANGE_DAY + 14):
        end = START + timedelta(days=day)
        score_window(settings, "churn", end - timedelta(days=7), end)
        out.append(monitor(settings, "churn", MonitorConfig(), end, TRAINING))
    return out


def test_the_week_before_the_change_raises_nothing_and_lists_what_is_not_comparable(runs):
    before = runs[0]
    assert not before.drift.drifted and not before.trigger.retrain and before.retrain is None
    assert not before.drift.severe
    skipped = {c.column: c.note for c in before.drift.columns if not c.compared}
    assert "90-day window" in skipped["late_invoices_90d"]


def test_the_price_rise_drifts_the_window_alone_and_holds_the_trigger(runs):
    _, after, later = runs
    for run in (after, later):
        assert "price_ratio" in run.drift.severe and run.drift.drifted
        assert run.drift.drifted_share < run.drift.drift_share  # the share rule alone misses it
        assert not run.trigger.retrain and run.retrain is None
    assert later.trigger.held and later.trigger.drift_streak == 2
    assert "price_ratio at 1.75x its threshold" in later.trigger.reasons[0]
