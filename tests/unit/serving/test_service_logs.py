"""A refused request is one WARNING line in the service's log; a server error keeps ERROR and
its traceback."""

from __future__ import annotations

import logging

import pytest
from pydantic import BaseModel, ValidationError

from serving.logs import BENTOML_HTTP, quiet_client_errors


class Body(BaseModel):
    n: int


def logged(error: BaseException, caplog) -> logging.LogRecord:
    quiet_client_errors()
    logger = logging.getLogger(BENTOML_HTTP)
    with caplog.at_level(logging.INFO, logger=BENTOML_HTTP):
        try:
            raise error
        except BaseException:
            logger.error("Exception on %s [%s]", "/events", "POST", exc_info=True)
    return caplog.records[-1]


def test_a_validation_error_is_one_warning_line_without_traceback(caplog):
    with pytest.raises(ValidationError) as caught:
        Body.model_validate({"n": "many"})
    record = logged(caught.value, caplog)
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage().startswith("Exception on /events [POST]: client error: 1 valid")


def test_a_server_error_keeps_its_traceback(caplog):
    record = logged(RuntimeError("boom"), caplog)
    assert record.levelno == logging.ERROR and record.exc_info is not None
