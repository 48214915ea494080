"""The serving core without a server: reasons, supplied-feature checks, champions, the log."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta

import lightgbm as lgb
import numpy as np
import pyarrow.parquet as pq
import pytest

from closedloop.clock import running_clock
from closedloop.predictions import PredictionBatch, log_folder
from closedloop.scores import Direction
from features.online import LIVE_VIEW, OnlineReader, OnlineRow, ServiceLayout, ViewLayout
from serving.actions_bridge import REASONS, KeptRows, ScorerScores, action_readers
from serving.champion import Champion, Champions, ModelCache
from serving.prediction_log import PredictionLog
from serving.scoring import RequestError, Scorer, check_supplied, top_reasons
from training.model import ScoringModel
from training.registry import ModelVersion


@pytest.fixture(scope="module")
def model() -> ScoringModel:
    """A small LightGBM model: risk rises with outages, ``plan`` matters a little."""
    rng = np.random.default_rng(0)
    outages = rng.uniform(0, 100, 600)
    tenure = rng.uniform(0, 60, 600)
    plan = rng.integers(0, 2, 600)
    label = (outages + 10 * plan + rng.normal(0, 10, 600) > 60).astype(int)
    data = lgb.Dataset(np.column_stack([outages, tenure, plan]), label, categorical_feature=[2])
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 7}, data, 30)
    return ScoringModel(
        booster=booster,
        features=["outage_minutes", "tenure_months", "plan"],
        categories={"plan": ["basic", "premium"]},
        calibration_x=np.array([]),
        calibration_y=np.array([]),
    )


def champion(model: ScoringModel, version: str, source: str = "registry") -> Champion:
    return Champion("churn", version, "churn_v1", model, source)


def test_reasons_are_the_largest_contributions_in_plain_words():
    contributions = np.array([0.1, -0.7, 0.0, 0.3])
    record = {"a": 1.0, "b": 2.5, "c": None, "d": "premium"}
    words = {"a": "outage minutes", "b": "tenure", "d": "plan"}
    reasons = top_reasons(contributions, record, ["a", "b", "c", "d"], words, top=3)
    assert [r.feature for r in reasons] == ["b", "d", "a"]
    assert reasons[0].direction is Direction.LOWERS and reasons[1].direction is Direction.RAISES
    assert reasons[0].text == "tenure: 2.5 (lowers the risk)"
    assert reasons[1].text == "plan: premium (raises the risk)"
    assert len(top_reasons(contributions, record, ["a", "b", "c", "d"], words, top=10)) == 3


def test_supplied_features_are_checked_by_name_type_and_finiteness():
    features = ["outage_minutes", "plan"]
    good = {"outage_minutes": 3, "plan": "basic"}
    assert check_supplied(good, features, {"plan"}, 0) == []
    assert check_supplied({"outage_minutes": None}, features, {"plan"}, 0) == []
    problems = check_supplied(
        {"outage_minutes": float("inf"), "plan": 2, "colour": "red"}, features, {"plan"}, 4
    )
    assert problems == [
        "row 4: unknown feature 'colour'",
        "row 4: outage_minutes must be a finite number, got inf",
        "row 4: plan expects text, got 2",
    ]
    assert check_supplied({"outage_minutes": True}, features, {"plan"}, 0) == [
        "row 0: outage_minutes expects a number, got True"
    ]


def test_a_clock_started_in_the_past_runs_at_wall_speed():
    start = datetime(2026, 3, 5, tzinfo=UTC)
    clock = running_clock(start)
    assert timedelta(0) <= clock() - start < timedelta(seconds=5)
    assert abs(running_clock(None)() - datetime.now(UTC)) < timedelta(seconds=5)


class Registry:
    """The registry as the champions see it: an alias that can move or stop answering."""

    def __init__(self, version: str | None) -> None:
        self.version = version
        self.down = False
        self.fetched: list[str] = []

    def lookup(self, name: str) -> ModelVersion | None:
        if self.down:
            raise ConnectionError("registry is down")
        return None if self.version is None else ModelVersion("churn", self.version, "", "churn_v1")

    def fetch_with(self, model: ScoringModel):
        def fetch(found: ModelVersion) -> Champion:
            self.fetched.append(found.version)
            return champion(model, found.version)

        return fetch


def test_champions_follow_the_alias_and_fetch_each_version_once(model, tmp_path):
    registry = Registry("1")
    champions = Champions(
        ["churn"], ModelCache(tmp_path), registry.lookup, registry.fetch_with(model)
    )
    assert champions.refresh() == ["churn"] and champions.get("churn").version == "1"
    assert champions.refresh() == []
    registry.version = "2"
    assert champions.refresh() == ["churn"] and champions.get("churn").version == "2"
    registry.version = "1"
    champions.refresh()
    assert champions.get("churn").version == "1"
    assert registry.fetched == ["1", "2"], "a version already on disk is not downloaded again"


def test_no_champion_in_the_registry_means_not_ready(model, tmp_path):
    registry = Registry(None)
    champions = Champions(
        ["churn"], ModelCache(tmp_path), registry.lookup, registry.fetch_with(model)
    )
    champions.refresh()
    assert not champions.ready and champions.status["churn"].registry_error is None


def test_a_dead_registry_at_start_serves_the_last_good_version_from_disk(model, tmp_path):
    registry = Registry("3")
    cache = ModelCache(tmp_path)
    Champions(["churn"], cache, registry.lookup, registry.fetch_with(model)).refresh()
    registry.down = True
    restarted = Champions(["churn"], cache, registry.lookup, registry.fetch_with(model))
    restarted.refresh()
    served = restarted.get("churn")
    assert (served.version, served.source) == ("3", "disk cache")
    assert "registry is down" in restarted.status["churn"].registry_error
    registry.down = False
    restarted.refresh()
    status = restarted.status["churn"]
    assert (status.source, status.registry_error) == ("registry", None)


def test_a_registry_that_hangs_does_not_hold_up_the_start(model, tmp_path):
    registry = Registry("3")
    cache = ModelCache(tmp_path)
    Champions(["churn"], cache, registry.lookup, registry.fetch_with(model)).refresh()
    release = threading.Event()

    def hanging(name: str) -> ModelVersion | None:
        release.wait(10)
        return registry.lookup(name)

    champions = Champions(["churn"], cache, hanging, registry.fetch_with(model))
    champions.start(every_seconds=60, answer_within=0.2)
    try:
        assert champions.get("churn").source == "disk cache", "scores from the cache at once"
        assert not champions.ready, "not ready before the registry answers or time is up"
        deadline = time.monotonic() + 5
        while not champions.ready:
            assert time.monotonic() < deadline, "ready once the registry is given up on"
            time.sleep(0.05)
        assert champions.status["churn"].registry_error == "no answer within 0.2 s"
        assert "no answer within 0.2 s" in champions.status["churn"].reason
    finally:
        release.set()
        champions.stop()


def test_a_start_scores_from_the_cache_at_once_and_is_ready_when_the_registry_confirms(
    model, tmp_path
):
    registry = Registry("3")
    cache = ModelCache(tmp_path)
    Champions(["churn"], cache, registry.lookup, registry.fetch_with(model)).refresh()
    answer = threading.Event()

    def slow(name: str) -> ModelVersion | None:
        answer.wait(10)
        return registry.lookup(name)

    connected: list[bool] = []
    champions = Champions(["churn"], cache, slow, registry.fetch_with(model))
    champions.start(every_seconds=60, answer_within=30, connect=lambda: connected.append(True))
    try:
        served, status = champions.get("churn"), champions.status["churn"]
        assert (served.version, served.source, status.source) == ("3", "disk cache", "disk cache")
        assert not champions.ready and "has not answered" in status.reason
        registry.version = "4"  # the alias moved while the service was down
        answer.set()
        deadline = time.monotonic() + 5
        while not champions.ready:
            assert time.monotonic() < deadline, "ready once the registry answered"
            time.sleep(0.02)
        served = champions.get("churn")
        assert (served.version, status.source, status.reason) == ("4", "registry", None)
        assert connected == [True] and registry.fetched == ["3", "4"]
    finally:
        champions.stop()


def test_a_deleted_alias_serves_the_last_good_version_and_says_why(model, tmp_path):
    registry = Registry("3")
    cache = ModelCache(tmp_path)
    running = Champions(["churn"], cache, registry.lookup, registry.fetch_with(model))
    running.refresh()
    registry.version = None  # the alias is deleted, or the store is empty
    running.refresh()
    assert running.get("churn").version == "3", "the version served is kept"
    assert "names no champion" in running.status["churn"].reason
    restarted = Champions(["churn"], cache, registry.lookup, registry.fetch_with(model))
    restarted.refresh()
    served, status = restarted.get("churn"), restarted.status["churn"]
    assert (served.version, served.source, status.registry_error) == ("3", "disk cache", None)
    assert "names no champion" in status.reason
    registry.version = "3"
    restarted.refresh()
    assert (status.source, status.reason) == ("registry", None)
    assert registry.fetched == ["3"]


def test_a_truncated_cached_copy_is_quarantined_and_the_previous_version_served(model, tmp_path):
    registry = Registry("1")
    cache = ModelCache(tmp_path)
    first = Champions(["churn"], cache, registry.lookup, registry.fetch_with(model))
    first.refresh()
    registry.version = "2"
    first.refresh()
    booster = tmp_path / "churn" / "2" / "booster.txt"
    text = booster.read_text()
    booster.write_text(text[: len(text) // 2])  # LightGBM aborts the process on this one
    registry.down = True
    restarted = Champions(["churn"], cache, registry.lookup, registry.fetch_with(model))
    restarted.refresh()
    served, status = restarted.get("churn"), restarted.status["churn"]
    assert (served.version, served.source) == ("1", "disk cache")
    assert status.quarantined == ["cached version 2: booster.txt does not match its checksum"]
    (aside,) = (tmp_path / "churn" / "quarantine").iterdir()
    assert aside.name.startswith("2-") and (aside / "booster.txt").read_text() != text
    assert "checksum" in (aside / "REASON").read_text()
    assert [e["version"] for e in cache.served("churn")] == ["1"]
    registry.down = False
    restarted.refresh()
    assert (restarted.get("churn").version, restarted.status["churn"].source) == ("2", "registry")
    assert registry.fetched == ["1", "2", "2"], "the quarantined version is fetched again"


def test_one_models_failure_leaves_the_others_serving(model, tmp_path):
    fetched: list[str] = []

    def lookup(name: str) -> ModelVersion:
        return ModelVersion(name, "1", "", f"{name}_v1")

    def fetch(found: ModelVersion) -> Champion:
        fetched.append(found.name)
        if found.name == "fault":
            raise OSError("artifact missing")
        return champion(model, found.version)

    champions = Champions(["churn", "fault"], ModelCache(tmp_path), lookup, fetch)
    assert champions.refresh() == ["churn"]
    assert champions.ready and champions.get("fault") is None
    assert "version 1 cannot be loaded" in champions.status["fault"].reason
    champions.refresh()
    assert fetched == ["churn", "fault"], "a version that failed is not fetched every poll"


def test_scoring_before_any_model_loaded_is_a_503(model, tmp_path):
    registry = Registry(None)
    champions = Champions(
        ["churn"], ModelCache(tmp_path), registry.lookup, registry.fetch_with(model)
    )
    champions.refresh()
    with pytest.raises(RequestError) as missing:
        Scorer(champions, {}).by_ids("churn", ["cus_1"], 3)
    assert (missing.value.status, missing.value.code) == (503, "model_unavailable")


def test_the_log_writes_every_queued_row_on_close_and_no_partial_files(model, tmp_path):
    log = PredictionLog(tmp_path, flush_rows=7, flush_seconds=60)
    stamp = datetime(2026, 3, 5, tzinfo=UTC)
    for start in range(0, 20, 3):
        rows = range(start, min(start + 3, 20))
        batch = PredictionBatch(
            model="churn",
            model_version="1",
            feature_service="churn_v1",
            source="online",
            request_id=f"r{start // 3}",
            scored_at=stamp,
            entity_ids=[f"cus_{i}" for i in rows],
            probabilities=[i / 100 for i in rows],
            stale_features=[0 for _ in rows],
            features={
                "outage_minutes": [float(i) for i in rows],
                "tenure_months": [None for _ in rows],
                "plan": ["basic" for _ in rows],
            },
        )
        log.append(champion(model, "1"), batch)
    log.close()
    folder = log_folder(tmp_path, "churn")
    assert not list(folder.glob("*.partial"))
    written = pq.read_table(folder).to_pandas().sort_values("outage_minutes")
    assert log.written == 20 and len(written) == 20
    assert written.entity_id.tolist() == [f"cus_{i}" for i in range(20)]
    assert written.tenure_months.isna().all() and (written.plan == "basic").all()


class Features:
    """An online store's reader of fixed rows, counting its reads."""

    layout = ServiceLayout(
        "churn_v1",
        "customer_id",
        (ViewLayout("v", "t", 0, ("outage_minutes", "tenure_months", "plan"), ("a", "b", "c")),),
    )

    def __init__(self, rows: dict[str, dict], at: datetime | None = None) -> None:
        self.rows, self.at, self.asked = rows, at, []

    def read_many(self, entity_ids: list[str], now: datetime) -> dict[str, OnlineRow]:
        self.asked.append(list(entity_ids))
        at = self.at or now
        return {
            e: OnlineRow(self.rows[e], {"v": at}, [])
            if e in self.rows
            else OnlineRow({}, {"v": None}, ["v"])
            for e in entity_ids
        }


def test_the_action_layer_explains_each_input_once_and_remembers_it(model, tmp_path):
    registry = Registry("1")
    champions = Champions(
        ["churn"], ModelCache(tmp_path), registry.lookup, registry.fetch_with(model)
    )
    champions.refresh()
    rows = {
        "c1": {"outage_minutes": 90.0, "tenure_months": 3.0, "plan": "premium"},
        "c2": {"outage_minutes": 10.0, "tenure_months": 40.0, "plan": "basic"},
        "c3": {"outage_minutes": 90.0, "tenure_months": 3.0, "plan": "premium"},  # as c1
        "c4": {"outage_minutes": 50.0, "tenure_months": 9.0, "plan": "basic"},
    }
    scorer = Scorer(champions, {"churn_v1": Features(rows)})
    scores = ScorerScores(scorer, kept=2)
    first = scores.churn(["c1", "c2", "c3"])
    assert all(not s.reasons for s in first.values())
    explained = scores.explain(list(first.values()))
    direct = scorer.reasons(champions.get("churn"), [rows[c] for c in first], REASONS)
    assert [s.reasons for s in explained] == direct and all(direct)
    assert (scores.explained, scores.recalled) == (3, 0)
    again = scores.explain([scores.churn(["c3"])["c3"], scores.churn(["c2"])["c2"]])
    assert [s.reasons for s in again] == [direct[2], direct[1]]
    assert (scores.explained, scores.recalled) == (3, 2), "the same inputs are not explained twice"
    scores.explain([scores.churn(["c4"])["c4"]])  # new inputs: c1's, used least lately, go
    scores.explain([first["c1"]])
    assert (scores.explained, scores.recalled) == (5, 2), "at most `kept` explanations are kept"


def test_the_action_path_reuses_a_known_entitys_row_for_a_while_judging_its_freshness_anew(
    tmp_path,
):
    written = datetime(2026, 3, 1, tzinfo=UTC)
    layout = ServiceLayout("churn_v1", "customer_id", (ViewLayout("v", "t", 3600, ("x",), ("x",)),))
    store = Features({"c1": {"x": 1.0}, "c2": {"x": 2.0}}, written)
    store.layout = layout
    tick = [0.0]
    rows = KeptRows(store, seconds=60, kept=2, clock=lambda: tick[0])
    first = rows.read_many(["c1", "c2", "c9", "c1"], written)
    assert list(first) == ["c1", "c2", "c9"] and first["c2"].values == {"x": 2.0}
    store.rows["c1"] = {"x": 5.0}  # materialized again
    tick[0] = 59.0
    later = written + timedelta(hours=2)
    again = rows.read_many(["c2", "c1", "c9"], later)
    assert store.asked == [["c1", "c2", "c9"], ["c9"]], "an unknown entity is asked again"
    assert again["c1"].values == {"x": 1.0} and again["c1"].stale_views == ["v"]
    tick[0] = 61.0
    assert rows.read(["c1"][0], written).values == {"x": 5.0}, "kept at most `seconds`"
    database = tmp_path / "online.db"
    sqlite3.connect(database).close()
    live = ServiceLayout("fault_v1", "cell_id", (ViewLayout(LIVE_VIEW, "t", 0, ("x",), ("x",)),))
    sqlite, pushed = OnlineReader(database, layout), OnlineReader(database, live)
    kept = action_readers({"churn_v1": sqlite, "fault_v1": pushed, "other": store})
    assert isinstance(kept["churn_v1"], KeptRows) and kept["churn_v1"].reader is sqlite
    assert kept["fault_v1"] is pushed and kept["other"] is store
