"""The backends of each profile, as the factories build them and ``closedloop settings`` prints
them: only what is wired, paths under the home, passwords never shown."""

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from actions.backends import open_stream
from actions.streams import RedisStream
from closedloop.backends import Concern
from closedloop.cli import app, profile_backends
from closedloop.settings import Settings
from features.backends import (
    OnlineStoreError,
    RedisOnlineStore,
    feast_config,
    online_store,
    redis_connection,
)
from features.online import ServiceLayout, ViewLayout, freshness, save_layouts
from training.backends import tracking, training_engine

runner = CliRunner()
NOT_WIRED_ANYWHERE = ("in-process queue", "kafka")


def cluster(**overrides) -> Settings:
    return Settings(
        profile="cluster",
        postgres_dsn=SecretStr("postgresql://ops:hunter2@db:5432/closedloop"),
        redis_url="redis://:sesame@cache:6380/1",
        **overrides,
    )


def test_embedded_profile_needs_no_server(tmp_path):
    backends = profile_backends(Settings(home=tmp_path))
    described = " ".join(b.describe() for b in backends)
    assert "redis" not in described
    assert "postgresql" not in described
    for backend in backends:
        if backend.concern not in (Concern.TRAINING, Concern.EVENT_INTAKE):  # they hold no state
            assert str(tmp_path.resolve()) in backend.where, backend


def test_cluster_profile_uses_postgres_and_redis_and_hides_passwords(tmp_path):
    backends = {b.concern: b for b in profile_backends(cluster(home=tmp_path))}
    assert backends[Concern.ONLINE_STORE].kind == "redis"
    assert backends[Concern.ONLINE_STORE].where == (
        "cache:6380 db 1; a service worker keeps the replies of up to 50,000 entities per "
        "feature service until Redis reports them written"
    )
    asks = profile_backends(cluster(home=tmp_path, serve_feature_cache=0))[0]
    assert asks.concern is Concern.ONLINE_STORE
    assert asks.where == "cache:6380 db 1; every read asks Redis"
    assert backends[Concern.TRACKING].kind == "postgresql"
    assert "ops:***@db:5432" in backends[Concern.TRACKING].where
    assert "registry on postgresql postgresql://ops:***@db:5432" in (
        backends[Concern.OFFLINE_STORE].where
    )
    described = " ".join(b.describe() for b in backends.values())
    assert "hunter2" not in described and "sesame" not in described


def test_cluster_profile_pushes_live_telemetry_to_redis(tmp_path):
    backends = {b.concern: b for b in profile_backends(cluster(home=tmp_path))}
    live = backends[Concern.LIVE_FEATURES]
    assert live.wired and live.describe() == "redis cache:6380 db 1, pushed through Feast"
    assert online_store(cluster(home=tmp_path)).live_writer() is None, "none before apply"


def test_training_runs_on_dask_on_the_cluster_profile_or_where_a_scheduler_is_named(tmp_path):
    def engine(settings: Settings) -> tuple[bool, str]:
        built = training_engine(settings)
        described = {b.concern: b for b in profile_backends(settings)}[Concern.TRAINING]
        assert described == built.backend, "settings prints the engine train builds"
        return built.on_dask, built.backend.describe()

    assert engine(Settings(home=tmp_path)) == (False, "lightgbm in one process")
    assert engine(cluster(home=tmp_path, dask_workers=3)) == (
        True,
        "lightgbm.dask on a local Dask cluster of 3 workers started by the command",
    )
    for profile in ("embedded", "cluster"):
        named = Settings(home=tmp_path, profile=profile, dask_scheduler="tcp://dask:8786")
        assert engine(named) == (True, "lightgbm.dask on the scheduler tcp://dask:8786")


@pytest.mark.parametrize("profile", ["embedded", "cluster"])
def test_settings_prints_exactly_what_the_factories_build(tmp_path, profile):
    settings = Settings(home=tmp_path, profile=profile)
    args = ["--home", str(tmp_path), "--profile", profile, "settings"]
    table = runner.invoke(app, args, env={"COLUMNS": "400"})
    as_json = runner.invoke(app, [*args, "--json"])
    assert table.exit_code == 0 and as_json.exit_code == 0, table.output + as_json.output
    printed = json.loads(as_json.output)
    assert printed["profile"] == profile
    expected = profile_backends(settings)
    assert [(b["concern"], b["kind"], b["where"]) for b in printed["backends"]] == [
        (b.concern.value, b.kind, b.where) for b in expected
    ]
    for backend in expected:
        assert backend.concern.value in table.output
        assert backend.describe() in table.output
    for words in NOT_WIRED_ANYWHERE:
        assert words not in table.output.lower()
        assert words not in as_json.output.lower()


def test_descriptions_name_what_the_factories_configure(tmp_path):
    embedded = Settings(home=tmp_path)
    backends = {b.concern: b for b in profile_backends(embedded)}
    config = feast_config(embedded)
    assert backends[Concern.ONLINE_STORE].where == config["online_store"]["path"]
    assert config["registry"]["path"] in backends[Concern.OFFLINE_STORE].where
    assert tracking(embedded).uri == f"sqlite:///{embedded.paths.mlflow_db}"
    assert str(embedded.paths.mlflow_db) in backends[Concern.TRACKING].where

    remote = cluster(home=tmp_path)
    config = feast_config(remote)
    assert config["online_store"] == {
        "type": "redis",
        "connection_string": "cache:6380,db=1,password=sesame",
    }
    assert config["registry"]["registry_type"] == "sql"
    assert tracking(remote).uri == "postgresql+psycopg://ops:hunter2@db:5432/closedloop"
    assert isinstance(online_store(remote), RedisOnlineStore)


def test_redis_urls_become_feasts_connection_strings():
    assert redis_connection("redis://127.0.0.1:6379/0") == "127.0.0.1:6379,db=0"
    assert redis_connection("redis://cache") == "cache:6379,db=0"
    assert redis_connection("redis://:pw@cache:6380/3") == "cache:6380,db=3,password=pw"


def test_an_unreachable_redis_is_one_clear_problem(tmp_path):
    settings = Settings(home=tmp_path, profile="cluster", redis_url="redis://127.0.0.1:1/0")
    settings.paths.feast.mkdir(parents=True)
    view = ViewLayout("cell_health", "closedloop_cell_health", 3600, ("a",), ("a thing",))
    save_layouts(settings.paths.online_layout, [ServiceLayout("fault_v1", "cell_id", (view,))])
    with pytest.raises(OnlineStoreError, match=r"redis 127.0\.0\.1:1 db 0 is unreachable"):
        online_store(settings).readers()


def test_embedded_readers_before_apply_say_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="closedloop features apply"):
        online_store(Settings(home=tmp_path)).readers()


def test_a_view_is_stale_when_missing_or_older_than_its_ttl():
    now = datetime(2026, 1, 10, 12, tzinfo=UTC)
    views = (
        ViewLayout("hourly", "t1", 3600, ("a",), ("a",)),
        ViewLayout("forever", "t2", 0, ("b",), ("b",)),
        ViewLayout("absent", "t3", 3600, ("c",), ("c",)),
    )
    layout = ServiceLayout("s", "cell_id", views)
    newest = {"hourly": now - timedelta(hours=2), "forever": now - timedelta(days=900)}
    assert freshness(layout, {**newest, "absent": None}, now) == ["hourly", "absent"]
    fresh = {**newest, "hourly": now - timedelta(minutes=59), "absent": now}
    assert freshness(layout, fresh, now) == []


def readme_profile_table() -> dict[str, tuple[str, str]]:
    """The README's profile table: concern -> (embedded, cluster) cells, in order."""
    text = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    table = text.split("| concern | `embedded` | `cluster` |\n|---|---|---|\n", 1)[1]
    rows = [line.strip("| ").split(" | ") for line in table.split("\n\n", 1)[0].splitlines()]
    return {concern: (embedded, cluster) for concern, embedded, cluster in rows}


def test_readme_profile_table_says_what_the_factories_build(tmp_path):
    table = readme_profile_table()
    for column, profile in enumerate(("embedded", "cluster")):
        backends = profile_backends(Settings(home=tmp_path, profile=profile))
        assert list(table) == [b.concern.value for b in backends], profile
        for backend in backends:
            cell = table[backend.concern.value][column]
            assert cell.startswith(backend.kind), (profile, cell, backend)
            where = backend.where.replace(str(tmp_path.resolve()), "HOME")
            for path in re.findall(r"HOME[\w/.-]*", where):
                assert f"`{path}`" in cell, (profile, path, cell)


def test_embedded_events_are_decided_in_the_request():
    backends = {b.concern: b for b in profile_backends(Settings())}
    intake = backends[Concern.EVENT_INTAKE]
    assert intake.wired and intake.kind == "http and file replay"
    assert "POST /events" in intake.where and "closedloop replay" in intake.where
    assert open_stream(Settings()) is None


def test_cluster_events_go_through_a_redis_stream_and_its_consumers(tmp_path):
    settings = cluster(home=tmp_path, stream_key="ops:events", stream_max_deliveries=7)
    intake = {b.concern: b for b in profile_backends(settings)}[Concern.EVENT_INTAKE]
    assert intake.kind == "redis stream"
    assert intake.where.startswith("ops:events on cache:6380 db 1, group closedloop:")
    assert "closedloop consume" in intake.where and "ops:events:dead after 7" in intake.where
    assert "sesame" not in intake.where
    stream = open_stream(settings)  # built without connecting
    assert isinstance(stream, RedisStream) and stream.dead == "ops:events:dead"
    stream.close()
