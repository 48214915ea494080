"""The BentoML service in a real subprocess, over HTTP: contract, bad input, reload, log, cache."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import httpx
import jsonschema
import pandas as pd
import pyarrow.parquet as pq
import pytest
from access_kit import bearer
from prometheus_client.parser import text_string_to_metric_families

from closedloop.models import spec
from closedloop.predictions import log_folder
from closedloop.settings import Settings
from closedloop.world.config import WorldConfig
from features.pipeline import repository
from features.repo import service_features
from serving.champion import ModelCache
from serving.process import PROJECT, RunningService, start_service
from training import registry
from training.config import LightGBMParams, churn_defaults
from training.pipeline import train

CONFIG = WorldConfig(customers=2_000, days=63, seed=5, customers_per_cell=50)
END = datetime(2026, 3, 5, tzinfo=UTC)
FAST = LightGBMParams(num_boost_round=120, early_stopping_rounds=20)
AUTH: dict[str, str] = {}  # a viewer key's Authorization header, made with the home


def serving_settings(home_settings: Settings, port: int, **update) -> Settings:
    values = {
        **home_settings.model_dump(),
        "serve_port": port,
        "clock_start": END,
        "model_poll_seconds": 0.5,
        **update,
    }
    return Settings.model_validate(values)


@pytest.fixture(scope="module")
def home(tmp_path_factory, prepare_serving) -> Settings:
    """A home with both champions registered and the online store loaded at the world's end."""
    settings = prepare_serving(tmp_path_factory.mktemp("serving"), CONFIG, END, FAST)
    retrained = train(settings, "churn", churn_defaults().model_copy(update={"lightgbm": FAST}))
    assert retrained.version == "2"
    AUTH.update(bearer(settings, "viewer"))
    return settings


@pytest.fixture(scope="module")
def churn_outcomes(home) -> pd.DataFrame:
    return pd.read_parquet(home.world_dir / "labels/churn.parquet")


@pytest.fixture(scope="module")
def customers(churn_outcomes) -> list[str]:
    """Customers still with the operator at the world's end."""
    return churn_outcomes.query("not churned").customer_id.head(50).tolist()


@pytest.fixture(scope="module")
def departed(churn_outcomes) -> list[str]:
    """Customers who left at least a week before the end: their features stopped."""
    gone = churn_outcomes.query("churned").dropna(subset=["churn_date"])
    early = gone[pd.to_datetime(gone.churn_date) < pd.Timestamp(END.date()) - pd.Timedelta(days=7)]
    return early.customer_id.head(5).tolist()


@pytest.fixture(scope="module")
def cells(home) -> list[str]:
    return pd.read_parquet(home.world_dir / "inventory/cells.parquet").cell_id.head(10).tolist()


@pytest.fixture(scope="module")
def service(home, free_port):
    running = start_service(serving_settings(home, free_port()))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def openapi(service) -> dict:
    return httpx.get(f"{service.url}/docs.json", headers=AUTH).json()


def body_schema(document: dict, path: str, part: str) -> dict:
    """The published JSON schema of a route's request (``part="request"``) or 200 response."""
    method = "post" if "post" in document["paths"][path] else "get"
    operation = document["paths"][path][method]
    holder = operation["requestBody"] if part == "request" else operation["responses"]["200"]
    schema = holder["content"]["application/json"]["schema"]
    return {**schema, "components": document["components"]}


def conforms(document: dict, path: str, instance: object, part: str = "response") -> None:
    """Validate ``instance`` against the published OpenAPI document."""
    jsonschema.validate(instance, body_schema(document, path, part))


def metric(service: RunningService, name: str, **labels: str) -> float:
    """The sum of a Prometheus sample's values over the samples matching ``labels``."""
    text = httpx.get(f"{service.url}/metrics", headers=AUTH).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def post(service: RunningService, path: str, body: object) -> httpx.Response:
    return httpx.post(f"{service.url}{path}", json=body, timeout=30, headers=AUTH)


def test_openapi_publishes_every_route_with_typed_models(openapi):
    paths = openapi["paths"]
    for route in ("/churn/score", "/fault/score", "/churn/what-if", "/fault/what-if"):
        assert "post" in paths[route], route
    assert "/status/health" in paths
    request = body_schema(openapi, "/churn/score", "request")
    assert request["properties"]["customer_ids"]["maxItems"] == 1_000
    assert request["additionalProperties"] is False
    score = openapi["components"]["schemas"]["Score"]["properties"]
    assert {"probability", "reasons", "stale_features"} <= set(score)
    assert all(field.get("description") for field in score.values())


def test_churn_scores_name_version_service_and_reasons(service, openapi, customers):
    request = {"customer_ids": customers[:20], "explain": 4}
    conforms(openapi, "/churn/score", request, "request")
    answer = post(service, "/churn/score", request)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    conforms(openapi, "/churn/score", body)
    assert (body["model"], body["model_version"], body["feature_service"]) == (
        "churn",
        "1",
        "churn_v1",
    )
    assert [s["entity_id"] for s in body["scores"]] == customers[:20]
    assert len({round(s["probability"], 9) for s in body["scores"]}) > 5
    for score in body["scores"]:
        assert 0 <= score["probability"] <= 1
        assert 1 <= len(score["reasons"]) <= 4
        sizes = [abs(r["contribution"]) for r in score["reasons"]]
        assert sizes == sorted(sizes, reverse=True)
        for reason in score["reasons"]:
            assert reason["direction"] == ("raises" if reason["contribution"] > 0 else "lowers")
            assert reason["text"].endswith(f"({reason['direction']} the risk)")
        assert score["stale_features"] == [], "features loaded at the clock's start are fresh"


def test_features_older_than_their_ttl_are_flagged_stale(service, departed):
    body = post(service, "/churn/score", {"customer_ids": departed}).json()
    assert len(body["scores"]) == len(departed)
    for score in body["scores"]:
        assert {"mrr", "outage_minutes_30d", "complaints_30d"} <= set(score["stale_features"])
    assert metric(service, "closedloop_stale_scores_total", model="churn") >= len(departed)


def test_fault_scores_cells(service, openapi, cells):
    body = post(service, "/fault/score", {"cell_ids": cells}).json()
    conforms(openapi, "/fault/score", body)
    assert (body["model"], body["feature_service"]) == ("fault", "fault_v1")
    assert [s["entity_id"] for s in body["scores"]] == cells


def test_what_if_with_the_online_features_gives_the_same_score(service, customers):
    online = post(service, "/churn/score", {"customer_ids": customers[:5]}).json()["scores"]
    rows = [score["features"] for score in online]
    supplied = post(service, "/churn/what-if", {"rows": rows}).json()["scores"]
    for by_id, what_if in zip(online, supplied, strict=True):
        assert what_if["probability"] == pytest.approx(by_id["probability"], abs=1e-9)
    worse = [
        {**row, "outage_minutes_30d": (row["outage_minutes_30d"] or 0) + 2_000} for row in rows
    ]
    hurt = post(service, "/churn/what-if", {"rows": worse}).json()["scores"]
    assert all(
        h["probability"] >= w["probability"] - 1e-12 for h, w in zip(hurt, supplied, strict=True)
    )


def test_unknown_ids_are_listed_and_all_unknown_is_404(service, customers):
    mixed = post(service, "/churn/score", {"customer_ids": [customers[0], "cus_nobody"]}).json()
    assert mixed["unknown_ids"] == ["cus_nobody"] and len(mixed["scores"]) == 1
    none = post(service, "/churn/score", {"customer_ids": ["cus_nobody", "cus_nobody_2"]})
    assert none.status_code == 404
    error = none.json()["error"]
    assert error["code"] == "unknown_ids"
    assert error["detail"]["unknown_ids"] == ["cus_nobody", "cus_nobody_2"]


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/churn/score", {"customer_ids": []}, "customer_ids"),
        ("/churn/score", {"customer_ids": [f"c{i}" for i in range(1_001)]}, "customer_ids"),
        ("/churn/score", {"customer_ids": ["x"], "explain": -1}, "explain"),
        ("/churn/score", {"customer_ids": "cus_1"}, "customer_ids"),
        ("/churn/score", {"customers": ["x"]}, "customers"),
        ("/fault/score", {"cell_ids": [1, 2]}, "cell_ids"),
    ],
)
def test_malformed_requests_get_a_4xx_naming_the_field(service, openapi, path, body, expected):
    with pytest.raises(jsonschema.ValidationError):
        conforms(openapi, path, body, "request")
    answer = post(service, path, body)
    assert 400 <= answer.status_code < 500
    assert expected in answer.text


def test_wrong_types_and_unknown_features_are_422_with_each_problem(service, customers):
    row = post(service, "/churn/score", {"customer_ids": customers[:1]}).json()["scores"][0]
    bad = [
        {**row["features"], "outage_minutes_30d": "a lot"},
        {**row["features"], "sla_tier": 3},
        {"favourite_colour": "red"},
    ]
    answer = post(service, "/churn/what-if", {"rows": bad})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "invalid_features"
    problems = "\n".join(error["detail"]["problems"])
    assert "row 0: outage_minutes_30d expects a number" in problems
    assert "row 1: sla_tier expects text" in problems
    assert "row 2: unknown feature 'favourite_colour'" in problems


def test_the_served_feature_order_is_the_specs_feature_service(service, home, customers):
    expected = service_features(repository(home).services[spec("churn").feature_service])
    answer = post(service, "/churn/what-if", {"rows": [{"favourite_colour": "red"}]})
    assert answer.json()["error"]["detail"]["features"] == expected
    row = post(service, "/churn/score", {"customer_ids": customers[:1]}).json()["scores"][0]
    assert list(row["features"]) == expected


def test_nan_and_non_json_never_crash_the_service(service):
    nan = httpx.post(
        f"{service.url}/churn/what-if",
        content='{"rows": [{"outage_minutes_30d": NaN}]}',
        headers={"content-type": "application/json", **AUTH},
    )
    assert 400 <= nan.status_code < 500
    assert "finite" in nan.text or "NaN" in nan.text
    garbage = httpx.post(
        f"{service.url}/churn/score",
        content="{not json",
        headers={"content-type": "application/json", **AUTH},
    )
    assert 400 <= garbage.status_code < 500
    assert httpx.get(f"{service.url}/status/health", headers=AUTH).json()["status"] == "ok"


def test_health_and_metrics_name_the_models_served(service, openapi, customers):
    post(service, "/churn/score", {"customer_ids": customers[:3]})
    health = httpx.get(f"{service.url}/status/health", headers=AUTH).json()
    conforms(openapi, "/status/health", health)
    assert health["status"] == "ok" and health["problems"] == []
    assert health["models"]["churn"]["version"] == "1"
    assert health["models"]["churn"]["source"] == "registry"
    assert health["feature_services"] == ["churn_v1", "fault_v1"]
    assert metric(service, "closedloop_model_version", model="churn", version="1") == 1
    assert metric(service, "closedloop_model_version", model="fault", version="1") == 1
    assert metric(service, "closedloop_score_seconds_count", model="churn", source="online") >= 1
    assert metric(service, "closedloop_score_probability_count", model="churn") >= 3
    assert metric(service, "closedloop_rejected_requests_total", model="churn", code="unknown_ids")


def test_a_second_service_starting_leaves_the_first_ones_metrics(
    service, home, customers, free_port
):
    post(service, "/churn/score", {"customer_ids": customers[:2]})
    before = metric(service, "closedloop_score_probability_count", model="churn")
    start_service(serving_settings(home, free_port())).stop()
    assert metric(service, "closedloop_score_probability_count", model="churn") >= before > 0


def test_the_alias_moves_under_load_without_a_failed_request_and_nothing_is_lost(
    home, customers, free_port
):
    settings = serving_settings(home, free_port())
    running = start_service(settings)
    versions: list[str] = []
    failures: list[str] = []
    answered: dict[str, int] = {}  # request id -> scores given
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=running.url, timeout=10, headers=AUTH) as client:
            while not stop.is_set():
                answer = client.post("/churn/score", json={"customer_ids": customers[:4]})
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code} {answer.text}")
                    continue
                body = answer.json()
                versions.append(body["model_version"])
                answered[body["request_id"]] = len(body["scores"])

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(1.0)
        registry.connect(home)
        registry.promote_by_hand("churn", "2", "hot reload test", by="platform (test)")
        deadline = time.monotonic() + 20
        while "2" not in versions and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        stop.set()
        worker.join()
        registry.promote_by_hand("churn", "1", "back to the first version", by="platform (test)")
        code = running.stop()
    assert failures == []
    first_new = versions.index("2")
    assert set(versions[:first_new]) == {"1"} and set(versions[first_new:]) == {"2"}
    assert code == 0, running.log_text()[-2_000:]
    logged = pq.read_table(log_folder(home.home, "churn")).to_pandas()
    mine = logged[logged.request_id.isin(answered)]
    assert mine.groupby("request_id").size().to_dict() == answered
    assert set(mine.model_version) == {"1", "2"}
    assert (mine.feature_service == "churn_v1").all() and mine.outage_minutes_30d.notna().all()
    assert mine.scored_at.min() >= pd.Timestamp(END), "the log runs on the service's clock"


def test_unreachable_registry_starts_from_the_last_good_model_on_disk(
    home, service, customers, free_port
):
    database = home.home / "mlflow" / "mlflow.db"
    kept = database.with_suffix(".kept")
    database.rename(kept)
    database.mkdir()  # the registry's database cannot be opened
    try:
        running = start_service(serving_settings(home, free_port(), registry_timeout_seconds=3))
        try:
            health = httpx.get(f"{running.url}/status/health", headers=AUTH).json()
            answer = post(running, "/churn/score", {"customer_ids": customers[:2]})
        finally:
            running.stop()
    finally:
        database.rmdir()
        kept.rename(database)
    assert health["status"] == "degraded"
    churn = health["models"]["churn"]
    assert (churn["version"], churn["source"]) == ("1", "disk cache")
    assert churn["registry_error"]
    assert any("registry unreachable" in p for p in health["problems"])
    assert answer.status_code == 200 and answer.json()["model_version"] == "1"
    assert "last known good" in running.log_text()


def probabilities(answer: httpx.Response) -> dict[str, float]:
    assert answer.status_code == 200, answer.text
    return {s["entity_id"]: s["probability"] for s in answer.json()["scores"]}


def wait_for_version(running: RunningService, name: str, version: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        health = httpx.get(f"{running.url}/status/health", headers=AUTH).json()
        if health["models"][name]["version"] == version:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} did not move to version {version}")


def test_a_corrupt_cached_copy_is_quarantined_and_the_version_before_it_served(
    home, customers, cells, free_port
):
    client = registry.connect(home)
    feeder = start_service(serving_settings(home, free_port()))
    try:
        registry.promote_by_hand("churn", "2", "cache test", by="platform (test)")
        wait_for_version(feeder, "churn", "2")
        expected = probabilities(post(feeder, "/churn/score", {"customer_ids": customers[:3]}))
        registry.promote_by_hand("churn", "1", "cache test", by="platform (test)")
        wait_for_version(feeder, "churn", "1")  # the cache has served 2, then 1
    finally:
        feeder.stop()
    cached = home.paths.model_cache / "churn"
    booster = cached / "1" / "booster.txt"
    booster.write_text(booster.read_text()[: booster.stat().st_size // 2])  # aborts LightGBM
    client.delete_registered_model_alias("churn", registry.CHAMPION)
    try:
        running = start_service(serving_settings(home, free_port()))
        try:
            health = httpx.get(f"{running.url}/status/health", headers=AUTH).json()
            churn = post(running, "/churn/score", {"customer_ids": customers[:3]})
            fault = post(running, "/fault/score", {"cell_ids": cells[:2]})
        finally:
            code = running.stop()
    finally:
        client.set_registered_model_alias("churn", registry.CHAMPION, "1")
    model = health["models"]["churn"]
    assert (model["version"], model["source"]) == ("2", "disk cache")
    assert model["quarantined"] == ["cached version 1: booster.txt does not match its checksum"]
    assert any("quarantined" in p for p in health["problems"])
    (aside,) = (cached / "quarantine").glob("1-*")
    assert "checksum" in (aside / "REASON").read_text()
    assert churn.json()["model_version"] == "2" and probabilities(churn) == expected
    assert health["models"]["fault"]["source"] == "registry"
    assert fault.status_code == 200 and len(fault.json()["scores"]) == 2
    started = running.log_text().count("serving the last known good version 2")
    assert code == 0 and started == 1, "one worker, never restarted"


def test_a_removed_registry_store_serves_both_models_from_the_cache_at_once(
    home, service, customers, cells, free_port
):
    # after this test the module's service reads an emptied store: keep it the last to use it
    expected = probabilities(post(service, "/churn/score", {"customer_ids": customers[:3]}))
    version = post(service, "/churn/score", {"customer_ids": customers[:1]}).json()
    cache = ModelCache(home.paths.model_cache)
    deadline = time.monotonic() + 30  # the champion confirmed by the registry is the last good
    served = version["model_version"]
    while cache.served("churn")[0]["version"] != served or not cache.has("churn", served):
        assert time.monotonic() < deadline, cache.served("churn")
        time.sleep(0.2)
    database = home.home / "mlflow" / "mlflow.db"
    kept = database.with_suffix(".kept")
    database.rename(kept)  # MLflow makes a new, empty store in its place
    try:
        running = start_service(serving_settings(home, free_port(), registry_timeout_seconds=60))
        try:
            health = httpx.get(f"{running.url}/status/health", headers=AUTH).json()
            churn = post(running, "/churn/score", {"customer_ids": customers[:3]})
            fault = post(running, "/fault/score", {"cell_ids": cells[:2]})
        finally:
            running.stop()
    finally:
        for leftover in database.parent.glob("mlflow.db*"):
            leftover.unlink()
        kept.rename(database)
    assert health["status"] == "degraded"
    for name in ("churn", "fault"):  # the new store is empty, or half made by two processes
        model = health["models"][name]
        assert model["source"] == "disk cache" and model["reason"]
        assert any(problem.startswith(f"{name}: ") for problem in health["problems"])
    assert health["models"]["churn"]["version"] == version["model_version"]
    assert probabilities(churn) == expected, "the cached copy scores as the registry's did"
    assert fault.status_code == 200 and len(fault.json()["scores"]) == 2


def test_a_bento_builds_from_the_bentofile(tmp_path):
    command = [sys.executable, "-m", "bentoml", "build", "-f", "serving/bentofile.yaml", "."]
    quiet = {"BENTOML_HOME": str(tmp_path), "BENTOML_DO_NOT_TRACK": "true"}
    built = subprocess.run(
        command, cwd=PROJECT, env={**os.environ, **quiet}, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr[-2_000:]
    bento = next((tmp_path / "bentos" / "closedloop").glob("*/bento.yaml")).parent
    assert (bento / "src" / "serving" / "service.py").exists()
    assert "lightgbm" in (bento / "bento.yaml").read_text()
