"""The bounded intake: up to its limit held at once, on its own threads, never on the event
loop; one more refused at once with 503, Retry-After and the code ``overloaded``."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from serving.shedding import Intake


def test_the_intake_holds_its_limit_off_the_loop_and_refuses_one_more():
    intake = Intake("scoring", 2)
    release = threading.Event()
    loop_thread = threading.get_ident()

    def work() -> int:
        release.wait(10)
        return threading.get_ident()

    async def scenario():
        assert intake.admit() and intake.admit()
        running = [asyncio.create_task(intake.run(work)) for _ in range(2)]
        await asyncio.sleep(0)
        refused = intake.admit()  # the loop answers while both threads are busy
        release.set()
        threads = await asyncio.gather(*running)
        return refused, threads, intake.admit()

    try:
        refused, threads, after = asyncio.run(scenario())
    finally:
        intake.close()
    assert refused is False and after is True
    assert loop_thread not in threads and len(set(threads)) == 2
    answer = intake.busy()
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
    error = json.loads(answer.body)["error"]
    assert error["code"] == "overloaded" and "2 scoring request(s)" in error["message"]


def test_a_failing_request_frees_its_place():
    intake = Intake("events", 1)

    def boom() -> None:
        raise ValueError("bad")

    async def scenario() -> bool:
        assert intake.admit()
        with pytest.raises(ValueError):
            await intake.run(boom)
        return intake.admit()

    try:
        assert asyncio.run(scenario())
    finally:
        intake.close()
