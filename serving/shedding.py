"""Answers of a service that cannot take more work now: 503 with ``Retry-After``, at once,
rather than a wait past the client's timeout (a 504 whose fate the client cannot know)."""

from __future__ import annotations

import math

from starlette.responses import JSONResponse

from serving.api import RequestError


def retry_later(code: str, message: str, seconds: float = 1.0) -> JSONResponse:
    """503 with ``Retry-After`` (whole seconds): nothing was done, sending it again is safe."""
    error = RequestError(503, code, f"{message}; nothing was done, try again")
    return JSONResponse(
        error.body(),
        status_code=error.status,
        headers={"Retry-After": str(max(1, math.ceil(seconds)))},
    )
