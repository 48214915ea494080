"""The service's log: a client's mistake is one WARNING line, not an ERROR with a traceback.

BentoML logs every request it refuses (a body that fails validation, a 4xx of its own) through
``log_exception``: ERROR with the traceback, megabytes after one fuzz run.
:func:`quiet_client_errors` turns those records into one WARNING line naming the route and the
problem; errors of the server (5xx, anything else) keep their traceback."""

from __future__ import annotations

import logging

BENTOML_HTTP = "bentoml._internal.server.http_app"  # the logger of BentoML's log_exception


def _client_error(error: BaseException | None) -> bool:
    """A problem of the request, not of the server."""
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        return True
    status = getattr(getattr(error, "error_code", None), "value", None)  # BentoMLException
    return isinstance(status, int) and 400 <= status < 500


class ClientErrors(logging.Filter):
    """Rewrites a refused request's record as one WARNING line, without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if record.levelno >= logging.ERROR and _client_error(error):
            summary = str(error).splitlines()[0] if str(error) else type(error).__name__
            record.msg = f"{record.getMessage()}: client error: {summary}"
            record.args = ()
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


def quiet_client_errors() -> None:
    """Install :class:`ClientErrors` on BentoML's request logger (once per process)."""
    logger = logging.getLogger(BENTOML_HTTP)
    if not any(isinstance(f, ClientErrors) for f in logger.filters):
        logger.addFilter(ClientErrors())
