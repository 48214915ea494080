"""``closedloop serve`` as a real process tree (the closedloop process, the BentoML server and
its worker): TERM or INT of ``closedloop serve`` stops every process it started and frees the
port; after a kill -9 of ``closedloop serve`` or of the BentoML server nothing is left holding
the port, and the next start succeeds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from serving.process import alive, descendants


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def live(port: int) -> bool:
    """The worker answers (it has started: a worker still importing is not covered)."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/livez", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def serve(home, port: int) -> tuple[subprocess.Popen, list[int]]:
    """``closedloop serve`` once its server listens and its worker runs, and every process
    under it."""
    env = {**os.environ, "CLOSEDLOOP_HOME": str(home), "CLOSEDLOOP_REGISTRY_TIMEOUT_SECONDS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "closedloop", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not live(port):
        assert process.poll() is None, f"closedloop serve exited ({process.returncode})"
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the service never listened")
        time.sleep(0.3)
    while len(tree := descendants(process.pid)) < 2:  # the BentoML server and its worker
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("no worker started")
        time.sleep(0.3)
    return process, tree


def gone(tree: list[int], within: float = 60) -> None:
    deadline = time.monotonic() + within
    while left := [pid for pid in tree if alive(pid)]:
        assert time.monotonic() < deadline, f"still running: {left}"
        time.sleep(0.2)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stopping_closedloop_serve_stops_every_process_it_started(tmp_path, free_port, sig):
    port = free_port()
    process, tree = serve(tmp_path, port)
    process.send_signal(sig)
    assert process.wait(90) == 0
    gone(tree)
    assert not listening(port)


def test_after_a_kill_9_of_serve_or_of_its_server_a_restart_succeeds(tmp_path, free_port):
    port = free_port()
    process, tree = serve(tmp_path, port)
    process.kill()  # closedloop serve itself: its server is told to stop
    process.wait(10)
    gone(tree)
    process, tree = serve(tmp_path, port)  # same port: it was freed
    os.kill(tree[0], signal.SIGKILL)  # the BentoML server: its worker and serve stop too
    assert process.wait(90) == 2
    gone(tree)
    process, tree = serve(tmp_path, port)
    process.send_signal(signal.SIGTERM)
    assert process.wait(90) == 0
    gone(tree)
