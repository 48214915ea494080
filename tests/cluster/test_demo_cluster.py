"""``closedloop demo`` on the cluster profile, run as a user runs it: the whole loop on
PostgreSQL (ledger, MLflow, Feast registry), Redis (online store, event stream) and Dask."""

import json

import psycopg
import redis
from cli_run import run_cli
from demo_kit import check_demo_output
from pydantic import SecretStr

from actions.backends import open_ledger
from closedloop.settings import Settings
from monitoring.episode import SCHEMA


def test_demo_runs_the_loop_on_postgresql_redis_and_dask(tmp_path, database, redis_db, free_port):
    env = {
        "CLOSEDLOOP_PROFILE": "cluster",
        "CLOSEDLOOP_POSTGRES_DSN": database,
        "CLOSEDLOOP_REDIS_URL": redis_db,
        "CLOSEDLOOP_SERVE_PORT": str(free_port()),
    }
    demo = ("demo", "--customers", "500", "--days", "45")
    result = run_cli(*demo, home=tmp_path, env=env, timeout=1800)  # the whole loop, on 2 cores
    assert result.returncode == 0, result.stderr
    assert "profile cluster" in result.stdout
    assert "through the event stream" in result.stdout
    assert "posted the same events again: 0 new decisions" in result.stdout
    assert "intact" in result.stdout
    for embedded in ("ledger.db", "feast/online.db", "feast/registry.db", "mlflow/mlflow.db"):
        assert not (tmp_path / embedded).exists(), f"{embedded}: the cluster profile wrote a file"

    with psycopg.connect(database) as connection:
        engines = connection.execute(
            "SELECT DISTINCT p.value FROM params p WHERE p.key = 'training_engine'"
        ).fetchall()
        models = connection.execute("SELECT name FROM registered_models").fetchall()
        views = connection.execute("SELECT COUNT(*) FROM feature_views").fetchone()[0]
        episode = connection.execute(
            f'SELECT DISTINCT name FROM "{SCHEMA}".model_versions'
        ).fetchall()
        episode_views = connection.execute(
            f'SELECT COUNT(*) FROM "{SCHEMA}".feature_views'
        ).fetchone()[0]
    assert engines and all(engine.startswith("lightgbm.dask") for (engine,) in engines)
    assert {"churn", "fault"} <= {name for (name,) in models}
    assert views > 0 and episode_views > 0, "the feature views of both worlds, apart"
    assert episode == [("fault",)], "the drift episode's models live in its own schema"

    client = redis.Redis.from_url(redis_db)
    streamed = Settings(profile="cluster").stream_key
    group = client.xinfo_groups(streamed)[0]
    consumers = {c["name"].decode() for c in client.xinfo_consumers(streamed, group["name"])}
    assert consumers == {"demo"} and group["pending"] == 0, "each entry decided, acknowledged"
    assert client.dbsize() > 2, "the online store's hashes are in Redis"

    cluster = Settings(home=tmp_path, profile="cluster", postgres_dsn=SecretStr(database))
    ledger = open_ledger(cluster)
    try:
        check_demo_output(result.stdout, result.stderr, ledger)
        posted = [json.loads(line) for line in cluster.paths.demo_events.read_text().splitlines()]
        known = ledger.read().value("SELECT COUNT(*) FROM events")
        assert known == len({event["event_id"] for event in posted}), "each event once"
    finally:
        ledger.close()
