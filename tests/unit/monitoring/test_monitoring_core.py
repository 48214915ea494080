"""The monitoring core on hand-made frames: labels, drift reading, policy, params."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from closedloop.alerts import AlertKind
from features.repo import Kind, Traits
from monitoring import drift as core
from monitoring.config import ColumnTest, DriftPolicy, KindTests, MonitorConfig
from monitoring.policy import decide, drift_streak, live_baseline, performance_verdict
from monitoring.summary import (
    ColumnDrift,
    DriftResult,
    MonitorSummary,
    Performance,
    QualityResult,
    RetrainOutcome,
    Trigger,
    drift_by_feature,
    latest_runs,
    owner_alert,
)
from training.labels import churn_labels, class_labels, fault_labels

T0 = pd.Timestamp("2026-02-01", tz="UTC")
END = datetime(2026, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)
H = pd.Timedelta(hours=1)


def test_churn_labels_mature_after_the_horizon_and_look_forward():
    rows = pd.DataFrame(
        {"entity_id": ["a", "b", "c", "a"], "scored_at": [T0, T0, T0, T0 + 20 * 24 * H]}
    )
    churn = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "churned": [True, True, False],
            "churn_date": [(T0 + 10 * 24 * H).date(), (T0 + 40 * 24 * H).date(), None],
        }
    )
    out = churn_labels(rows, churn, pd.Timedelta(days=30), T0 + pd.Timedelta(days=31))
    assert out["entity_id"].tolist() == ["a", "b", "c"]  # the last row has not matured
    assert out["label"].tolist() == [1, 0, 0]


def test_fault_labels_look_ahead_and_leave_out_ongoing_faults():
    rows = pd.DataFrame(
        {"entity_id": ["x", "x", "y", "y"], "scored_at": [T0, T0 + 10 * H, T0, T0 + 30 * H]}
    )
    faults = pd.DataFrame(
        {
            "cell_id": ["x", "y"],
            "start_at": [T0 + 3 * H, T0 - 2 * H],
            "end_at": [T0 + 5 * H, T0 + 1 * H],
        }
    )
    out = fault_labels(rows, faults, 6 * H, T0 + 24 * H)
    got = {(r.entity_id, r.scored_at): r.label for r in out.itertuples()}
    # y at T0 sits inside an ongoing fault; y at T0+30h has not matured
    assert got == {("x", T0): 1, ("x", T0 + 10 * H): 0}


def test_class_labels_are_the_recorded_classes_of_the_entities():
    rows = pd.DataFrame({"entity_id": ["a", "b", "c", "d"], "scored_at": [T0] * 4})
    churn = pd.DataFrame({"customer_id": ["a", "b", "c"], "category": ["price", "stayed", None]})
    out = class_labels(rows, churn, "customer_id", "category", ["price", "stayed"])
    assert out["entity_id"].tolist() == ["a", "b"]  # c has no class, d no label row
    assert out["label"].tolist() == [0, 1]


def test_each_class_probability_is_compared_and_one_drifting_drifts_the_window():
    reference, current = _frames(0.0)
    rng = np.random.default_rng(1)
    for frame, price in ((reference, 0.2), (current, 0.6)):
        frame["probability[price]"] = np.clip(rng.normal(price, 0.05, len(frame)), 0, 1)
        frame["probability[stayed]"] = 1 - frame["probability[price]"]
    policy = DriftPolicy(drift_share=0.5)
    predictions = ["probability", "probability[price]", "probability[stayed]"]
    features = ["latency", "loss", "vendor"]
    plan = core.comparison(
        reference, current, features, ["vendor"], policy, None, None, predictions
    )
    result = core.read_drift(core.drift_report(plan, policy), plan, policy)
    assert result.drifted_columns == [] and not result.prediction.drifted
    assert [c.column for c in result.classes] == predictions[1:]
    assert all(c.drifted for c in result.classes) and result.drifted


def _frames(shift: float, rows: int = 3_000, seed: int = 0):
    rng = np.random.default_rng(seed)

    def frame(offset: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "latency": rng.normal(30 + offset, 5, rows),
                "loss": rng.exponential(0.1, rows),
                "vendor": rng.choice(["aurora", "zenith"], rows),
                "probability": rng.beta(1, 30, rows),
            }
        )

    return frame(0), frame(shift)


def _drift_of(reference, current, categorical, policy, traits=None, start=None, features=None):
    features = features or ["latency", "loss", "vendor"]
    plan = core.comparison(reference, current, features, categorical, policy, traits, start)
    return core.read_drift(core.drift_report(plan, policy), plan, policy)


@pytest.mark.parametrize(("shift", "drifted"), [(0.0, []), (40.0, ["latency"])])
def test_drift_report_is_read_by_column_into_a_typed_result(shift, drifted):
    reference, current = _frames(shift)
    policy = DriftPolicy(drift_share=0.3)
    result = _drift_of(reference, current, ["vendor"], policy)
    assert [c.column for c in result.columns] == ["latency", "loss", "vendor"]
    assert result.drifted_columns == drifted
    assert result.drifted is bool(drifted)
    assert result.prediction is not None and not result.prediction.drifted
    assert [c.method for c in result.columns] == ["wasserstein", "wasserstein", "jensenshannon"]


def test_one_feature_far_past_its_threshold_drifts_the_window_alone():
    reference, current = _frames(5.0)  # latency moves by one standard deviation: distance ~1
    few = _drift_of(reference, current, ["vendor"], DriftPolicy(drift_share=0.5))
    assert few.drifted_share < 0.5 and few.severe == ["latency"] and few.drifted
    trigger = decide(few, None, [], "1", END, MonitorConfig())
    assert "latency at 1.75x its threshold" in trigger.reasons[0]
    lenient = _drift_of(reference, current, ["vendor"], DriftPolicy(drift_share=0.5, severe=20))
    assert lenient.drifted_columns == ["latency"] and not lenient.severe and not lenient.drifted


def test_sampling_is_seeded_and_bounded():
    frame = pd.DataFrame({"a": np.arange(10_000)})
    one, two = core.sample(frame, 500, 3), core.sample(frame, 500, 3)
    assert len(one) == 500 and one.equals(two)
    assert not one.equals(core.sample(frame, 500, 4))
    assert core.sample(frame, 20_000, 3) is frame


def _drift(drifted: bool) -> DriftResult:
    column = ColumnDrift(column="latency", method="w", threshold=0.1, score=0.5, drifted=drifted)
    return DriftResult(
        columns=[column], drifted_share=float(drifted), drift_share=0.3, drifted=drifted
    )


def _past(
    end: datetime, drifted: bool, version="1", retrained=False, held=False, performance=None
) -> MonitorSummary:
    return MonitorSummary(
        run="r",
        model="fault",
        champion_version=version,
        feature_service="fault_v1",
        created_at=end,
        reference_window="-",
        window_start=end - timedelta(days=7),
        window_end=end,
        drift=_drift(drifted),
        quality=QualityResult(
            rows=1, reference_rows=1, missing_share={}, reference_missing_share={}
        ),
        performance=performance,
        trigger=Trigger(retrain=retrained, held=held, reasons=[], drift_streak=0),
        retrain=RetrainOutcome(retrained=True, version="2") if retrained else None,
    )


def _first(value: float, until: datetime = END - 28 * DAY, test: float = 0.5) -> Performance:
    """The champion's first judged matured window; its test figure flatters (0.5)."""
    config = MonitorConfig()
    return performance_verdict({"pr_auc": value}, {"pr_auc": test}, 500, 20, config, until)


def _perf(value: float, until: datetime | None = END) -> Performance:
    config = MonitorConfig()
    return performance_verdict(
        {"pr_auc": value}, {"pr_auc": 0.5}, 500, 20, config, until, _first(0.2)
    )


def test_the_floor_is_set_by_the_lower_of_the_test_figure_and_the_first_matured_window():
    first = _first(0.04)  # the test figure flatters: the first live week sets the floor
    assert first.floor == pytest.approx(0.032) and first.below_floor is False
    assert first.baseline_until == END - 28 * DAY
    assert _first(0.10, test=0.05).floor == pytest.approx(0.04)  # a lucky first week does not
    assert _perf(0.17).floor == pytest.approx(0.16) and not _perf(0.17).below_floor
    unjudged = performance_verdict({"pr_auc": 0.01}, {"pr_auc": 0.5}, 50, 2, MonitorConfig())
    history = [
        _past(END - 21 * DAY, False, performance=unjudged),
        _past(END - 14 * DAY, False, version="0", performance=_first(0.5)),
        _past(END - 7 * DAY, False, performance=_first(0.04)),
        _past(END, False, performance=_first(0.9)),
    ]
    assert live_baseline(history, "1").metrics["pr_auc"] == 0.04
    assert live_baseline(history[:2], "1") is None


def test_drift_without_labels_must_persist_and_is_held_until_they_cover_it():
    config = MonitorConfig(persistence=2, matured_days=3)
    once = decide(_drift(True), None, [_past(END - 7 * DAY, False)], "1", END, config)
    assert not once.retrain and not once.held and once.drift_streak == 1
    twice = decide(_drift(True), None, [_past(END - 7 * DAY, True)], "1", END, config)
    assert not twice.retrain and twice.held and twice.drift_streak == 2
    assert "latency" in twice.reasons[0] and "held until labels cover" in twice.reasons[1]
    # labels 30 days behind do not reach back to the drift's start: still held
    old = _perf(0.19, until=END - 30 * DAY)
    assert decide(_drift(True), old, [_past(END - 7 * DAY, True)], "1", END, config).held
    # once they cover it, the held trigger retrains even though the metric holds
    history = [_past(END - (7 * k) * DAY, True, held=True) for k in range(1, 5)]
    covered = decide(_drift(True), _perf(0.19), history, "1", END, config)
    assert covered.retrain and "held until its labels matured" in covered.reasons[1]


def test_labels_that_cover_the_drift_decide_at_once():
    config = MonitorConfig(persistence=2, matured_days=3)
    hurt = decide(_drift(True), _perf(0.05), [], "1", END, config)
    assert hurt.retrain and hurt.drift_streak == 1 and "below the floor" in hurt.reasons[1]
    unhurt = decide(_drift(True), _perf(0.19), [_past(END - 7 * DAY, True)], "1", END, config)
    assert not unhurt.retrain and not unhurt.held and "has not hurt" in unhurt.reasons[1]


def test_drift_of_an_earlier_champion_does_not_count():
    assert drift_streak(True, [_past(END - 7 * DAY, True, version="1")], "2") == 1


def test_no_drift_no_trigger():
    calm = decide(_drift(False), None, [], "1", END, MonitorConfig(persistence=1))
    assert not calm.retrain and calm.drift_streak == 0


def test_a_recent_retrain_holds_the_next_one():
    config = MonitorConfig(persistence=1, min_retrain_interval_hours=48)
    history = [_past(END - DAY, True, retrained=True)]
    held = decide(_drift(True), _perf(0.05), history, "1", END, config)
    assert not held.retrain and held.held and "not retraining yet" in held.reasons[-1]
    later = decide(_drift(True), _perf(0.05, END + 2 * DAY), history, "1", END + 2 * DAY, config)
    assert later.retrain


def test_performance_below_the_floor_without_drift_must_persist():
    config = MonitorConfig(persistence=2)
    low = _perf(0.05)
    assert low.below_floor and low.floor == pytest.approx(0.16)
    assert not decide(_drift(False), low, [], "1", END, config).retrain
    before = _past(END - 7 * DAY, False, performance=low)
    trigger = decide(_drift(False), low, [before], "1", END, config)
    assert trigger.retrain and "for 2 runs in a row" in trigger.reasons[-1]


def test_too_few_matured_labels_give_no_verdict():
    few = performance_verdict({"pr_auc": 0.01}, {"pr_auc": 0.2}, 50, 2, MonitorConfig())
    assert few.floor == pytest.approx(0.16) and few.baseline_until is None
    assert few.below_floor is None
    assert not decide(_drift(False), few, [], "1", END, MonitorConfig()).retrain


def test_measurement_noise_and_a_few_gaps_do_not_trigger():
    reference, _ = _frames(0.0, seed=1)
    rng = np.random.default_rng(5)
    noisy = reference.sample(frac=1.0, random_state=2).reset_index(drop=True)
    noisy["latency"] = noisy["latency"] * rng.lognormal(0, 0.03, len(noisy))
    noisy.loc[rng.random(len(noisy)) < 0.01, "loss"] = np.nan
    result = _drift_of(reference, noisy, ["vendor"], DriftPolicy())
    assert not result.drifted_columns
    config = MonitorConfig(persistence=1)
    assert not decide(result, None, [], "1", END, config).retrain
    quality = core.read_quality(reference, noisy, ["latency", "loss", "vendor"])
    assert quality.missing_share["loss"] == pytest.approx(0.01, abs=0.005)
    assert quality.reference_missing_share["loss"] == 0


def test_a_parquet_sample_is_the_frame_sample_read_column_by_column(tmp_path):
    from monitoring.sampling import read_sample

    frame = pd.DataFrame({"a": np.arange(50_000), "b": np.arange(50_000) % 7})
    frame.to_parquet(tmp_path / "w.parquet", row_group_size=10_000)
    got = read_sample(tmp_path / "w.parquet", 3_000, seed=9)
    expected = core.sample(frame, 3_000, 9).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)


def test_a_window_over_parts_samples_the_rows_its_filter_keeps_as_the_frame_sample(tmp_path):
    from monitoring.sampling import PartsWindow

    rng = np.random.default_rng(4)
    parts, kept, frames = [], [], []
    for i, rows in enumerate((30_000, 5, 22_000)):
        frame = pd.DataFrame({"a": rng.normal(size=rows), "b": rng.choice(["x", "y", None], rows)})
        frame.loc[frame.index % 9 == 0, "a"] = np.nan
        path = tmp_path / f"part-{i}.parquet"
        frame.to_parquet(path, row_group_size=7_000)
        keep = (rng.random(rows) < 0.6) if i != 1 else np.zeros(rows, dtype=bool)
        parts.append(path)
        kept.append(keep)
        frames.append(frame[keep])
    window = PartsWindow(parts, kept)
    whole = pd.concat(frames, ignore_index=True)
    assert window.rows == len(whole)
    pd.testing.assert_frame_equal(window.read(), whole)
    expected = core.sample(whole, 4_000, 9).reset_index(drop=True)
    pd.testing.assert_frame_equal(window.sample(4_000, 9), expected)
    pd.testing.assert_frame_equal(window.sample(4_000, 9, ["b"]), expected[["b"]])
    shares = window.missing_share(["a", "b"])
    assert shares == pytest.approx({"a": whole.a.isna().mean(), "b": whole.b.isna().mean()})


def _stamped(frame: pd.DataFrame, start: pd.Timestamp, days: int) -> pd.DataFrame:
    spread = pd.to_timedelta(np.linspace(0, days, len(frame)), unit="D")
    return frame.assign(**{core.STAMP: start + spread})


def test_values_whose_trailing_window_is_not_full_are_not_compared():
    # a 30-day count filling up from the first day of history: it grows with the days seen
    start = pd.Timestamp("2026-01-01", tz="UTC")
    rng = np.random.default_rng(3)
    reference = _stamped(
        pd.DataFrame({"late_90d": rng.poisson(0.2, 4_000).astype(float)}), start, 40
    )
    reference["late_90d"] *= np.linspace(0.1, 1, len(reference))
    reference["calls_30d"] = rng.poisson(3, len(reference)) * np.minimum(
        1, np.linspace(0.025, 1, len(reference)) * 40 / 30
    )
    current = _stamped(
        pd.DataFrame(
            {"late_90d": rng.poisson(0.9, 1_000).astype(float), "calls_30d": rng.poisson(3, 1_000)}
        ),
        start + pd.Timedelta(days=50),
        7,
    )
    traits = {
        "late_90d": Traits(Kind.SPARSE, timedelta(days=90)),
        "calls_30d": Traits(Kind.LEVEL, timedelta(days=30)),
    }
    features = ["late_90d", "calls_30d"]
    blind = _drift_of(reference, current, [], DriftPolicy(), features=features)
    assert set(blind.drifted_columns) == {"late_90d", "calls_30d"}  # the false alarm
    result = _drift_of(reference, current, [], DriftPolicy(), traits, start, features)
    late, calls = result.columns
    assert not late.compared and not late.drifted and "90-day window" in late.note
    assert calls.compared and not calls.drifted and calls.rows[0] < len(reference)
    assert result.drifted_share == 0 and not result.drifted


def test_a_clock_feature_is_compared_with_its_reference_aged_to_the_window():
    start = pd.Timestamp("2026-01-01", tz="UTC")
    rng = np.random.default_rng(8)
    tenure = rng.gamma(2, 12, 4_000)
    reference = _stamped(pd.DataFrame({"tenure": tenure}), start, 14)
    current = _stamped(
        pd.DataFrame({"tenure": rng.gamma(2, 12, 1_500) + 3}), start + pd.Timedelta(days=91), 7
    )
    traits = {"tenure": Traits(Kind.CLOCK, per_day=1 / 30.4)}
    policy = DriftPolicy()
    aged = _drift_of(reference, current, [], policy, traits, start, ["tenure"])
    assert not aged.drifted_columns and "aged" in aged.columns[0].note
    as_level = _drift_of(reference, current, [], policy, None, start, ["tenure"])
    assert as_level.drifted_columns == ["tenure"]
    wave = current.assign(tenure=np.where(rng.random(len(current)) < 0.4, 0.5, current.tenure))
    assert _drift_of(reference, wave, [], policy, traits, start, ["tenure"]).drifted_columns


def test_a_model_owner_overrides_a_features_test_in_params():
    reference, current = _frames(3.0)
    default = _drift_of(reference, current, ["vendor"], DriftPolicy())
    assert default.drifted_columns == ["latency"]
    owned = DriftPolicy(features={"latency": ColumnTest(method="wasserstein", threshold=1.0)})
    result = _drift_of(reference, current, ["vendor"], owned)
    assert not result.drifted_columns and result.columns[0].threshold == 1.0
    loose = DriftPolicy(kinds=KindTests(level=ColumnTest(method="psi", threshold=5)))
    assert _drift_of(reference, current, ["vendor"], loose).columns[0].method == "psi"


def test_the_owner_hears_of_a_triggered_failed_or_held_retraining_only():
    calm = _past(END, drifted=False)
    assert owner_alert(calm, "network operations") is None
    held = owner_alert(_past(END, drifted=True, held=True), "network operations")
    assert held.kind is AlertKind.HELD and held.owner == "network operations"
    triggered = _past(END, drifted=True, retrained=True)
    assert owner_alert(triggered, "x").kind is AlertKind.TRIGGERED
    failed = triggered.model_copy(
        update={"retrain": RetrainOutcome(retrained=False, failed=True, reasons=["bad data"])}
    )
    alert = owner_alert(failed, "x")
    assert alert.kind is AlertKind.FAILED and "bad data" in alert.reasons
    assert alert.incident == f"monitor:fault:{failed.run}" and alert.at == END


def test_drift_by_feature_lists_the_drifted_first_with_kind_and_test():
    columns = [
        ColumnDrift(column="calm", kind="level", method="wasserstein", threshold=0.1, score=0.02,
                    drifted=False),
        ColumnDrift(column="latency", kind="rate", method="psi", threshold=0.2, score=0.9,
                    drifted=True),
        ColumnDrift(column="empty", method="psi", threshold=0.2, drifted=False,
                    note="no rows in the window"),
    ]  # fmt: skip
    drift = DriftResult(columns=columns, drifted_share=1 / 2, drift_share=0.3, drifted=True)
    table = drift_by_feature(drift)
    assert table.feature.tolist() == ["latency", "calm", "empty"]
    assert table.loc[0, ["kind", "test", "drifted"]].tolist() == ["rate", "psi", True]
    assert table.loc[2, "note"] == "no rows in the window" and pd.isna(table.loc[2, "score"])


def test_latest_runs_picks_each_models_last_run(tmp_path):
    from closedloop.settings import Settings

    settings = Settings(home=tmp_path)
    for n, end in enumerate([END - 7 * DAY, END]):
        summary = _past(end, drifted=bool(n)).model_copy(update={"run": f"run-{n}"})
        folder = settings.paths.monitoring("fault") / f"run-{n}"
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(summary.model_dump_json())
    latest = latest_runs(settings)
    assert list(latest) == ["fault"] and latest["fault"].run == "run-1"
