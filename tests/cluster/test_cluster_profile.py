"""The cluster profile for real: Feast's registry in PostgreSQL and its online store in Redis."""

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pandas as pd
import psycopg
import pytest
import redis
from pydantic import SecretStr
from typer.testing import CliRunner

from closedloop.cli import app
from closedloop.models import spec as spec_of
from closedloop.settings import Settings
from closedloop.world.config import WorldConfig
from features.backends import OnlineStoreError, online_store
from features.pipeline import apply_repository, materialize
from features.store import open_store
from training.config import LightGBMParams

FAST = LightGBMParams(num_boost_round=150, early_stopping_rounds=20)
CONFIG = WorldConfig(customers=300, days=10, seed=3, customers_per_cell=60)
OFFLINE = WorldConfig(customers=1_000, days=21, seed=5, customers_per_cell=25)
TRAINING = WorldConfig(customers=2_000, days=63, seed=5, customers_per_cell=50)


def test_features_apply_materialise_and_serve_on_postgres_and_redis(
    tmp_path, prepare, database, redis_db
):
    prepare(tmp_path, CONFIG)
    cluster = Settings(
        home=tmp_path, profile="cluster", postgres_dsn=SecretStr(database), redis_url=redis_db
    )
    repo = apply_repository(cluster)
    end = datetime(2026, 1, 11, tzinfo=UTC)
    assert materialize(cluster, end - timedelta(days=20), end, stock=False) == []  # Feast's path
    store = open_store(cluster)
    assert {v.name for v in store.list_feature_views()} == {v.name for v in repo.views}
    with psycopg.connect(database) as connection:
        tables = {r[0] for r in connection.execute("SELECT tablename FROM pg_tables")}
    assert "feature_views" in tables, "the registry lives in PostgreSQL"
    assert redis.Redis.from_url(redis_db).dbsize() > 0
    online = store.get_online_features(
        features=store.get_feature_service("churn_v1"), entity_rows=[{"customer_id": "cus_0000001"}]
    ).to_dict()
    customers = pd.read_parquet(tmp_path / "offline/customers").set_index("customer_id")
    assert online["mrr"] == [pytest.approx(customers.loc["cus_0000001", "mrr"])]
    assert online["tenure_months"][0] > 0


def test_training_on_dask_registers_in_postgres_a_model_like_one_process(
    tmp_path, prepare, database
):
    """On the cluster profile the final fit runs on a local Dask cluster of two workers
    (lightgbm.dask); the model is registered in PostgreSQL as one process registers it, and its
    test ROC AUC is that of one process within 0.06 (the workers bin and bag their own rows, and
    the test window of a small world is small)."""
    import mlflow

    from training.backends import training_engine
    from training.config import churn_defaults
    from training.pipeline import train
    from training.registry import load_champion

    embedded = prepare(tmp_path, TRAINING)
    cluster = Settings(
        home=tmp_path, profile="cluster", postgres_dsn=SecretStr(database), dask_workers=2
    )
    assert training_engine(cluster).backend.kind == "lightgbm.dask"
    assert training_engine(embedded).backend.kind == "lightgbm"
    apply_repository(cluster)
    config = churn_defaults().model_copy(update={"lightgbm": FAST})
    alone = train(embedded, "churn", config)
    outcome = train(cluster, "churn", config)
    with psycopg.connect(database) as connection:
        versions = connection.execute(
            "SELECT version FROM model_versions WHERE name = 'churn'"
        ).fetchall()
        runs = connection.execute("SELECT count(*) FROM runs").fetchone()[0]
        aliases = connection.execute(
            "SELECT alias, version FROM registered_model_aliases WHERE name = 'churn'"
        ).fetchall()
    assert versions == [(int(outcome.version),)], "the registry lives in PostgreSQL"
    assert runs == 1
    assert outcome.decision.promote, "the first churn model of this registry"
    assert aliases == [("champion", int(outcome.version))]
    run = mlflow.get_run(outcome.run_id)
    assert run.data.params["training_engine"] == training_engine(cluster).backend.describe()
    assert run.data.metrics["dask_workers"] == 2
    assert outcome.rows == alone.rows
    assert alone.metrics["roc_auc"] > 0.6 and outcome.metrics["roc_auc"] > 0.6
    assert outcome.metrics["roc_auc"] == pytest.approx(alone.metrics["roc_auc"], abs=0.06)
    assert outcome.metrics["pr_auc"] > outcome.metrics["base_rate"], "it ranks, as one process"
    champion = load_champion("churn")
    assert champion.model.booster.num_trees() == run.data.metrics["best_iteration"]


def test_serving_reads_redis_as_it_reads_sqlite(tmp_path, prepare, database, redis_db):
    """The cluster profile's online readers (Feast's Redis hashes, read straight) answer what
    the embedded profile's SQLite readers and Feast's get_online_features answer for the same
    rows: values, event times and staleness."""
    embedded = prepare(tmp_path, CONFIG)
    cluster = Settings(
        home=tmp_path, profile="cluster", postgres_dsn=SecretStr(database), redis_url=redis_db
    )
    end = datetime(2026, 1, 11, tzinfo=UTC)
    apply_repository(cluster)
    for settings in (embedded, cluster):
        materialize(settings, end - timedelta(days=20), end, stock=False)
    assert redis.Redis.from_url(redis_db).dbsize() > 0, "the cluster materialised into Redis"
    on_sqlite, on_redis = online_store(embedded).readers(), online_store(cluster).readers()
    assert set(on_sqlite) == set(on_redis) == {"churn_v1", "fault_v1"}
    customers = pd.read_parquet(tmp_path / "offline/customers").customer_id.head(5).tolist()
    cells = pd.read_parquet(tmp_path / "offline/cells").cell_id.head(3).tolist()
    for service, ids in (("churn_v1", [*customers, "cus_nobody"]), ("fault_v1", cells)):
        for entity_id in ids:
            for now in (end, end + timedelta(hours=5)):
                expected = on_sqlite[service].read(entity_id, now)
                found = on_redis[service].read(entity_id, now)
                assert found.values == pytest.approx(expected.values), (service, entity_id)
                assert found.event_times == expected.event_times
                assert found.stale_views == expected.stale_views
    feast = open_store(cluster)
    for service, ids in (("churn_v1", customers), ("fault_v1", cells)):
        answer = feast.get_online_features(
            features=feast.get_feature_service(service),
            entity_rows=[{on_redis[service].layout.join_key: i} for i in ids],
        ).to_dict()
        rows = on_redis[service].read_many(ids, end)
        for feature in on_redis[service].features:
            found = [rows[i].values[feature] for i in ids]
            assert found == pytest.approx(answer[feature]), (service, feature)
    assert on_redis["fault_v1"].read(cells[0], end + timedelta(hours=5)).stale_views
    check_kept_replies(cluster, feast, redis_db, customers, end)
    assert not on_redis["churn_v1"].read("cus_nobody", end).known
    env = {"CLOSEDLOOP_POSTGRES_DSN": database, "CLOSEDLOOP_REDIS_URL": redis_db}
    args = ["--home", str(tmp_path), "--profile", "cluster", "features", "lookup"]
    looked_up = CliRunner().invoke(app, [*args, "churn_v1", customers[0]], env=env)
    assert looked_up.exit_code == 0, looked_up.output
    assert "mrr" in looked_up.output and "customer_profile: as of" in looked_up.output
    unknown = CliRunner().invoke(app, [*args, "churn_v9", customers[0]], env=env)
    assert unknown.exit_code == 1 and "unknown feature service 'churn_v9'" in str(unknown.exception)


def check_kept_replies(cluster: Settings, feast, redis_db: str, customers: list, end) -> None:
    """Readers that keep Redis's replies (the service's) answer as Feast does, before and after
    another client writes a kept entity's hash."""
    from feast.infra.online_stores.helpers import _mmh3
    from feast.protos.feast.types.Value_pb2 import Value

    from features.online import PROJECT, entity_key

    reader = online_store(cluster).readers(kept=3)["churn_v1"]

    def feast_mrr() -> list[float]:
        rows = [{"customer_id": c} for c in customers]
        return feast.get_online_features(
            features=["customer_profile:mrr"], entity_rows=rows
        ).to_dict()["mrr"]

    first = reader.read_many(customers, end)
    assert reader.read_many(customers, end) == first, "kept replies, the same answers"
    assert [first[c].values["mrr"] for c in customers] == pytest.approx(feast_mrr())
    chosen = customers[-1]  # among the 3 kept, the others dropped (least recently read)
    view = next(v.name for v in reader.layout.views if "mrr" in v.features)
    redis.Redis.from_url(redis_db).hset(
        entity_key("customer_id", chosen) + PROJECT.encode(),
        _mmh3(f"{view}:mrr"),
        Value(double_val=12345.5).SerializeToString(),
    )
    deadline = time.monotonic() + 5  # Redis pushes the invalidation as the write commits
    while reader.read(chosen, end).values["mrr"] != 12345.5 and time.monotonic() < deadline:
        time.sleep(0.01)
    after = reader.read_many(customers, end)
    assert after[chosen].values["mrr"] == 12345.5
    assert [after[c].values["mrr"] for c in customers] == pytest.approx(feast_mrr())
    reader.close()


def test_an_unreachable_registry_is_one_clear_problem_not_a_crash(tmp_path, prepare, redis_db):
    prepare(tmp_path, CONFIG)
    cluster = Settings(
        home=tmp_path,
        profile="cluster",
        postgres_dsn=SecretStr("postgresql://postgres@127.0.0.1:1/nowhere"),
        redis_url=redis_db,
    )
    with pytest.raises(OnlineStoreError, match="the Feast registry cannot be read"):
        online_store(cluster).readers()


def ledger_events(database: str, settings: Settings) -> list[tuple]:
    with psycopg.connect(database) as connection:
        return connection.execute(
            f'SELECT event_id FROM "{settings.ledger_schema}".events'
        ).fetchall()


SERVED = WorldConfig(customers=2_000, days=63, seed=5, customers_per_cell=50)
SERVED_END = datetime(2026, 3, 5, tzinfo=UTC)


def test_the_service_on_the_cluster_profile_is_ready_and_scores_from_redis(
    tmp_path, prepare, database, redis_db, free_port
):
    """Registry and tracking on PostgreSQL, online features in Redis only (the home's SQLite
    store is applied but never loaded): the service becomes ready and scores with them."""
    from access_kit import bearer

    from serving.process import start_service
    from training.config import LightGBMParams, churn_defaults, fault_defaults
    from training.pipeline import train

    prepare(tmp_path, SERVED)
    cluster = Settings(
        home=tmp_path,
        profile="cluster",
        postgres_dsn=SecretStr(database),
        redis_url=redis_db,
        serve_port=free_port(),
        clock_start=SERVED_END,
        registry_timeout_seconds=60,  # a loaded machine's registry is slow to answer
        stream_key=f"test:{uuid.uuid4().hex[:8]}:events",
    )
    apply_repository(cluster)
    materialize(cluster, SERVED_END - timedelta(days=SERVED.days + 1), SERVED_END, stock=False)
    fast = LightGBMParams(num_boost_round=120, early_stopping_rounds=20)
    for target, defaults in (("churn", churn_defaults), ("fault", fault_defaults)):
        outcome = train(cluster, target, defaults().model_copy(update={"lightgbm": fast}))
        assert outcome.decision.promote, outcome.decision.reasons
    customers = pd.read_parquet(tmp_path / "offline/customers").set_index("customer_id")
    chosen = customers.index[:3].tolist()
    cell = customers.loc[chosen[0], "cell_id"]
    onset = {
        "event_id": "svc-1", "event_type": "alarm_onset", "cell_id": cell, "severity": "critical",
        "occurred_at": (SERVED_END - timedelta(minutes=5)).isoformat(), "alarm_id": "svc-a",
    }  # fmt: skip
    auth = bearer(cluster, "admin", "nms-admin")  # in the PostgreSQL ledger's key store
    running = start_service(cluster, ready_within=300)  # a loaded machine starts slowly
    try:
        health = httpx.get(f"{running.url}/status/health", headers=auth).json()
        answer = httpx.post(
            f"{running.url}/churn/score", json={"customer_ids": chosen}, headers=auth
        )
        streamed = httpx.post(f"{running.url}/events", json={"events": [onset]}, headers=auth)
        mixed = httpx.post(
            f"{running.url}/events",
            json={"events": [{**onset, "event_id": "svc-2"}, {"x": 1}]},
            headers=auth,
        )
    finally:
        running.stop()
    assert streamed.status_code == 202, streamed.text
    assert streamed.json()["accepted"] == ["svc-1"]
    assert streamed.json()["outcomes"][0]["outcome"] == "queued"
    assert mixed.status_code == 207 and mixed.json()["accepted"] == ["svc-2"]
    assert mixed.json()["outcomes"][1]["status"] == "rejected"
    entries = redis.Redis.from_url(redis_db).xrange(cluster.stream_key)
    assert [json.loads(f[b"event"])["event_id"] for _, f in entries] == ["svc-1", "svc-2"]
    key_id = auth["Authorization"].split("_")[1]  # each entry names who posted it
    assert {(f[b"sender"], f[b"by"]) for _, f in entries} == {
        (b"nms-admin", f"nms-admin ({key_id})".encode())
    }
    assert not ledger_events(database, cluster), "the service appends; consumers decide"
    assert health["status"] == "ok", health
    assert health["problems"] == [] and health["feature_services"] == ["churn_v1", "fault_v1"]
    assert answer.status_code == 200, answer.text
    scores = answer.json()["scores"]
    assert [s["entity_id"] for s in scores] == chosen
    for score in scores:
        assert score["features"]["mrr"] == pytest.approx(customers.loc[score["entity_id"], "mrr"])
        assert 0 <= score["probability"] <= 1


def test_the_offline_store_joins_a_training_set_point_in_time_on_the_cluster_profile(
    tmp_path, prepare, database
):
    """With the registry in PostgreSQL, Feast's DuckDB offline store joins the Parquet feature
    tables to the labelled snapshots as of each snapshot (a row newer than the snapshot is never
    used, one older than the view's TTL neither), and the set equals the embedded profile's."""
    from features.backends import feature_store_backend
    from training.config import fault_defaults
    from training.pipeline import feature_source, training_set

    embedded = prepare(tmp_path, OFFLINE)
    cluster = Settings(home=tmp_path, profile="cluster", postgres_dsn=SecretStr(database))
    backend = feature_store_backend(cluster)
    assert backend.kind == "parquet read by duckdb" and "registry on postgresql" in backend.where
    apply_repository(cluster)
    config = fault_defaults()
    joined = training_set(cluster, "fault", config)
    pd.testing.assert_frame_equal(joined, training_set(embedded, "fault", config))

    table = pd.read_parquet(feature_source(cluster, spec_of("fault")))
    table["event_timestamp"] = pd.to_datetime(table["event_timestamp"], utc=True)
    feature = "latency_ms_1h"
    snapshots = joined[["cell_id", "event_timestamp"]].copy()
    snapshots["event_timestamp"] = pd.to_datetime(snapshots["event_timestamp"], utc=True)
    expected = (
        pd.merge_asof(
            snapshots.reset_index().sort_values("event_timestamp"),
            table[["cell_id", "event_timestamp", feature]].sort_values("event_timestamp"),
            on="event_timestamp",
            by="cell_id",
            tolerance=pd.Timedelta(hours=3),
            allow_exact_matches=True,
        )
        .set_index("index")
        .sort_index()
    )
    assert len(joined) > 100
    pd.testing.assert_series_equal(
        joined[feature].astype(float), expected[feature].astype(float), check_names=False
    )
