"""``closedloop serve`` hands the workers setting to BentoML's own configuration, which the
service's import no longer reads."""

from __future__ import annotations

import json
import subprocess
import sys

from closedloop.settings import Settings
from serving.process import PROJECT, SERVICE_NAME, service_environment

READ_BACK = """
from bentoml._internal.configuration.containers import BentoMLContainer
from serving.service import Closedloop

assert Closedloop.name == {name!r}, Closedloop.name
Closedloop.inject_config()
print(BentoMLContainer.config.services[Closedloop.name].http.cors.enabled.get())
print(BentoMLContainer.config.services[Closedloop.name].workers.get())
"""


def test_the_workers_setting_reaches_bentoml_under_the_service_name(tmp_path):
    environment = service_environment(Settings(home=tmp_path, serve_workers=3))
    assert json.loads(environment["BENTOML_CONFIG_OVERRIDES"]) == {
        "services": {SERVICE_NAME: {"workers": 3}}
    }
    done = subprocess.run(
        [sys.executable, "-c", READ_BACK.format(name=SERVICE_NAME)],
        cwd=PROJECT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["False", "3"]  # no CORS unless configured


def test_cors_is_configured_only_for_the_origins_given(tmp_path):
    settings = Settings(home=tmp_path, cors_origins=["https://noc.example"])
    overrides = json.loads(service_environment(settings)["BENTOML_CONFIG_OVERRIDES"])
    cors = overrides["services"][SERVICE_NAME]["http"]["cors"]
    assert cors["enabled"] and cors["access_control_allow_origins"] == ["https://noc.example"]
    assert "Authorization" in cors["access_control_allow_headers"]
