"""The model contract is written once: every stage's view of a model derives from its spec."""

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from closedloop.home import Home
from closedloop.models import SPECS, ModelName, spec
from closedloop.predictions import LOG_COLUMNS, PredictionBatch, log_schema, log_table
from closedloop.settings import Settings
from features.repo import FeaturePaths, feature_repo, service_features
from monitoring.pipeline import report_columns
from training.config import LightGBMParams, train_config
from training.labels import churn_labels, churn_snapshots, fault_labels, fault_snapshots
from training.pipeline import feature_source
from training.trainer import fit

T0 = pd.Timestamp("2026-01-02", tz="UTC")
H = pd.Timedelta(hours=1)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return feature_repo(FeaturePaths.under(Home.at(tmp_path_factory.mktemp("repo"))))


def test_each_model_reads_a_feature_service_keyed_by_its_entity(repo):
    entities = {e.name: e for e in (repo.customer, repo.cell)}
    views = {view.name: view for view in repo.views}
    for model in SPECS.values():
        service = repo.services[model.feature_service]
        assert entities[model.entity].join_key == model.entity_key
        for projection in service.feature_view_projections:
            assert views[projection.name].entities == [model.entity]
        features = set(service_features(service))
        assert set(model.segments) <= features, "segments are inputs of the model"
        assert set(model.increasing) <= features, "monotone features are inputs of the model"


def test_the_entities_are_listed_in_the_feature_services_own_source(tmp_path):
    settings = Settings(home=tmp_path)
    paths = FeaturePaths.under(settings.paths)
    assert feature_source(settings, spec("churn")) == paths.customer_daily
    assert feature_source(settings, spec("fault")) == paths.cell_hourly


def test_training_defaults_are_the_specs_and_params_override_them():
    for model in SPECS.values():
        config = train_config(model.name)
        assert config.service is None  # at training: a data set's service, else the spec's
        assert config.horizon_hours == model.label.horizon_hours
        assert config.snapshot_every_hours == model.label.snapshot_every_hours
        assert config.increasing == model.increasing and config.gate == model.gate
        assert config.action_budget == model.action_budget
    tuned = train_config("fault", {"horizon_hours": 12, "gate": {"margin": 0.01}})
    assert tuned.horizon_hours == 12 and tuned.gate.margin == 0.01
    assert tuned.gate.min_roc_auc == spec("fault").gate.min_roc_auc, "nested keys merge"
    assert spec("churn").name is ModelName.CHURN
    with pytest.raises(KeyError, match="no model named 'upsell'"):
        spec("upsell")


def test_training_and_monitoring_label_a_row_alike():
    days = pd.date_range(T0, periods=12, freq="D")
    keys = pd.DataFrame({"customer_id": ["a"] * 12 + ["b"] * 12, "event_timestamp": [*days] * 2})
    churn = pd.DataFrame(
        {"customer_id": ["a", "b"], "churned": [True, True], "churn_date": [days[5], days[9]]}
    )
    horizon = 3 * 24 * H
    snapshots = churn_snapshots(keys, churn, horizon, 24 * H)
    rows = keys.rename(columns={"customer_id": "entity_id", "event_timestamp": "scored_at"})
    matured = churn_labels(rows, churn, horizon, days[-1])
    assert matured["label"].tolist() == snapshots["label"].tolist()
    assert snapshots["label"].sum() == 5  # a: days 3, 4, 5; b: days 7, 8 (9 is censored)

    hours = pd.date_range(T0, periods=30, freq="h")
    cells = pd.DataFrame({"cell_id": ["x"] * 30 + ["y"] * 30, "event_timestamp": [*hours] * 2})
    faults = pd.DataFrame(
        {
            "cell_id": ["x", "y", "x"],
            "start_at": [hours[4], hours[10], hours[20]],
            "end_at": [hours[7], hours[12], hours[21]],
        }
    )
    snapshots = fault_snapshots(cells, faults, 6 * H, H)
    rows = cells.rename(columns={"cell_id": "entity_id", "event_timestamp": "scored_at"})
    matured = fault_labels(rows, faults, 6 * H, hours[-1])
    key = ["event_timestamp", "cell_id"]
    got = matured.rename(columns={"entity_id": "cell_id", "scored_at": "event_timestamp"})
    pd.testing.assert_frame_equal(
        got.sort_values(key).reset_index(drop=True), snapshots.sort_values(key)[got.columns]
    )
    assert not ((snapshots.cell_id == "x") & snapshots.event_timestamp.isin(hours[4:7])).any()


def test_the_report_columns_are_the_feature_services_in_its_order(repo):
    model_spec = spec("fault")
    service = repo.services[model_spec.feature_service]
    fields = [f for projection in service.feature_view_projections for f in projection.features]
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            f.name: rng.choice(["a", "b"], 400) if str(f.dtype) == "String" else rng.random(400)
            for f in fields
        }
    )
    frame["label"] = (rng.random(400) < 0.3).astype(int)
    features = service_features(service)
    model, _ = fit(frame, frame, features, LightGBMParams(num_boost_round=3), seed=1)
    columns = report_columns(model)
    assert columns.features == features
    assert columns.categorical == [f.name for f in fields if str(f.dtype) == "String"]
    assert columns.numeric == [f.name for f in fields if str(f.dtype) != "String"]
    schema = log_schema(model.features, model.categories)
    assert schema.names == [*LOG_COLUMNS.names, *features], "the log's columns follow the service"


def test_a_request_and_a_batch_window_become_log_rows_through_one_builder():
    stamp = datetime(2026, 3, 5, tzinfo=UTC)
    request = PredictionBatch(
        model="churn", model_version="3", feature_service="churn_v1", source="online",
        request_id="r1", scored_at=stamp, entity_ids=["cus_1", "cus_2"],
        probabilities=[0.25, 0.5], stale_features=[0, 1],
        features={"outage": [1.0, None], "plan": ["basic", None]},
    )  # fmt: skip
    window = PredictionBatch(
        model="churn", model_version="3", feature_service="churn_v1", source="batch",
        request_id="batch-churn-3",
        scored_at=pd.Series(pd.date_range(stamp, periods=2, freq="h")),
        entity_ids=pd.Series(["cus_1", "cus_2"]), probabilities=np.array([0.125, 0.75]),
        stale_features=pd.Series([1, 0]),
        features={"outage": pd.Series([np.nan, 4.0]), "plan": pd.Series(["gold", np.nan])},
    )  # fmt: skip
    schema = log_schema(["outage", "plan"], {"plan"})
    table = log_table([request, window], schema)
    assert table.schema == schema and table.num_rows == 4
    rows = table.to_pylist()
    assert [r["source"] for r in rows] == ["online", "online", "batch", "batch"]
    assert [r["outage"] for r in rows] == [1.0, None, None, 4.0], "missing is null either way"
    assert [r["plan"] for r in rows] == ["basic", None, "gold", None]
    assert rows[0]["scored_at"] == rows[1]["scored_at"] == stamp
    assert rows[3]["scored_at"] == stamp + pd.Timedelta(hours=1)
    assert table.column("stale_features").type == pa.int32()
