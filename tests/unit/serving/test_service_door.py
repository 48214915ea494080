"""The service's door on a small ASGI app behind it (the real middleware, a real SQLite key
store): 401 without or with a bad key, 403 for a role that may not, 415 unless JSON, 413
before a large body is read, liveness open; the events rate per key; the published OpenAPI
document with its security and error bodies."""

from __future__ import annotations

import json

import pytest
from access_kit import bearer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from closedloop.settings import Settings
from serving.access import PRINCIPAL, AccessControl, TokenBucket
from serving.openapi import publish

DOCUMENT = {
    "openapi": "3.0.2",
    "paths": {
        "/churn/score": {"post": {"responses": {"200": {"description": "ok"}}}},
        "/events": {"post": {"responses": {"200": {"description": "ok"}}}},
        "/livez": {"get": {"responses": {"200": {"description": "ok"}}}},
    },
    "components": {"schemas": {}},
}


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    principal = request.scope["state"][PRINCIPAL]
    return JSONResponse({"bytes": len(body), "by": principal.label})


async def docs(request: Request) -> JSONResponse:
    return JSONResponse(DOCUMENT)


async def live(request: Request) -> JSONResponse:
    return JSONResponse({})


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOSEDLOOP_HOME", str(tmp_path))
    monkeypatch.setenv("CLOSEDLOOP_MAX_BODY_BYTES", "2048")
    routes = [
        Route("/events", echo, methods=["POST"]),
        Route("/churn/score", echo, methods=["POST"]),
        Route("/docs.json", docs),
        Route("/livez", live),
    ]
    app = AccessControl(Starlette(routes=routes))
    with TestClient(app) as running:
        yield running, Settings(home=tmp_path)


def test_every_route_but_liveness_needs_a_key_its_role_may_use(client):
    http, settings = client
    assert http.get("/livez").status_code == 200
    anonymous = http.post("/events", json={"events": []})
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith(
        "Bearer"
    )
    assert anonymous.json()["error"]["code"] == "unauthenticated"
    assert http.get("/docs.json").status_code == 401
    bad = http.post("/events", json={}, headers={"Authorization": "Bearer clk_nope"})
    assert bad.status_code == 401 and "not a closedloop API key" in bad.text
    source, viewer = bearer(settings, "event_source"), bearer(settings, "viewer")
    assert http.post("/events", json={}, headers=source).json()["by"].startswith("test event")
    refused = http.post("/churn/score", json={}, headers=source)
    assert refused.status_code == 403 and "may not read" in refused.json()["error"]["message"]
    assert http.post("/events", json={}, headers=viewer).status_code == 403
    assert http.post("/churn/score", json={}, headers=viewer).status_code == 200


def test_only_json_bodies_within_the_limit_are_read(client):
    http, settings = client
    key = bearer(settings, "event_source")
    plain = http.post(
        "/events", content='{"events": []}',
        headers={**key, "Content-Type": "text/plain", "Origin": "https://evil.example"},
    )  # fmt: skip
    assert plain.status_code == 415 and plain.json()["error"]["code"] == "unsupported_media_type"
    assert "access-control-allow-origin" not in plain.headers
    big = http.post("/events", content=b"[" + b"1," * 2000 + b"1]", headers={
        **key, "Content-Type": "application/json"})  # fmt: skip
    assert big.status_code == 413 and big.json()["error"]["code"] == "body_too_large"

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b" " * 500

    streamed = http.post("/events", content=chunks(), headers={
        **key, "Content-Type": "application/json"})  # fmt: skip
    assert streamed.status_code == 413
    fits = http.post("/events", content=b" " * 2000, headers={
        **key, "Content-Type": "application/json; charset=utf-8"})  # fmt: skip
    assert fits.json()["bytes"] == 2000


def test_the_published_document_names_the_key_and_every_error_body(client):
    http, settings = client
    served = http.get("/docs.json", headers=bearer(settings, "viewer")).json()
    assert served == publish(DOCUMENT)
    assert served["components"]["securitySchemes"]["bearerKey"]["scheme"] == "bearer"
    score = served["paths"]["/churn/score"]["post"]
    assert score["security"] == [{"bearerKey": []}]
    assert {"401", "403", "404", "413", "415", "422", "503"} <= set(score["responses"])
    assert "429" not in score["responses"]
    bad = score["responses"]["400"]["content"]["application/json"]["schema"]
    assert bad == {"$ref": "#/components/schemas/BadRequestBody"}  # BentoML's own 400
    assert {"207", "429"} <= set(served["paths"]["/events"]["post"]["responses"])
    assert served["paths"]["/livez"]["get"]["security"] == []
    error = score["responses"]["401"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorBody"}
    assert json.dumps(DOCUMENT).count("security") == 0  # publish copies, never edits


def test_the_events_rate_is_per_key_with_a_burst():
    bucket = TokenBucket(rate=100, burst=200)
    assert bucket.take("a", 200, now=0.0) == 0
    assert bucket.take("a", 50, now=0.0) == pytest.approx(0.5)  # 50 events at 100/s
    assert bucket.take("b", 150, now=0.0) == 0  # another key has its own bucket
    assert bucket.take("a", 50, now=0.5) == 0
    assert bucket.take("a", 1000, now=0.5) == pytest.approx(2.0)  # until the bucket is full
    assert bucket.take("a", 1000, now=2.5) == 0  # a full bucket takes a batch over the burst
    assert bucket.take("a", 1, now=2.5) == pytest.approx(8.01)  # and its debt is paid first


def test_a_full_intake_is_refused_at_the_door_before_the_key_is_checked(client):
    from serving.shedding import intakes

    http, settings = client
    events = intakes(settings.serve_max_pending)["events"]
    while events.admit():  # the worker holds as many event requests as it may
        pass
    try:
        refused = http.post("/events", json={"events": []})
        scoring = http.post("/churn/score", json={}, headers=bearer(settings, "viewer"))
    finally:
        events.held = 0
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "overloaded"
    assert scoring.status_code == 200  # another kind's intake still has room
    assert http.post("/events", json={"events": []}).status_code == 401
