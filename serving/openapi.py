"""The published contract, completed: BentoML's OpenAPI document plus the bearer-key security
scheme on every route but liveness, and each error the service answers with its body's schema
(``ErrorBody``), so a client (or a fuzzer) can hold every answer to it."""

from __future__ import annotations

import copy
from typing import Any

OPEN = frozenset({"/livez", "/readyz"})
SCHEME = "bearerKey"
ERROR_BODY = {
    "title": "ErrorBody",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "machine-readable cause"},
                "message": {"type": "string", "description": "what went wrong, in words"},
                "detail": {"description": "the problems found, when there are several"},
            },
        }
    },
}
ERRORS = {
    "401": "no API key, or one that is unknown, revoked or expired",
    "403": "the key's role may not use this route",
    "413": "the body is larger than the service reads",
    "415": "the body is not application/json",
}
BAD_REQUEST = {
    "title": "BadRequestBody",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "what is wrong with the request"},
        "detail": {"description": "each problem the request's validation found"},
    },
}
"""BentoML's own answer to a request its schema refuses (400), as it is sent."""
POST_ERRORS = {
    "404": "none of the ids is known",
    "422": "the request is well-formed but cannot be scored or taken",
    "503": "the model or the action layer is not available yet, or the worker already holds "
    "its bound of requests of this kind (Retry-After; nothing was done)",
}
EVENTS_ERRORS = {"429": "the key posted more events than its rate allows (see Retry-After)"}


def _response(description: str) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def publish(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with security and the error responses of every operation."""
    out = copy.deepcopy(document)
    components = out.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["ErrorBody"], schemas["BadRequestBody"] = ERROR_BODY, BAD_REQUEST
    components["securitySchemes"] = {
        SCHEME: {"type": "http", "scheme": "bearer", "description": "a closedloop API key"}
    }
    for path, item in out.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            if path in OPEN:
                operation["security"] = []
                continue
            operation["security"] = [{SCHEME: []}]
            errors = dict(ERRORS)
            if method == "post":
                errors |= POST_ERRORS | (EVENTS_ERRORS if path == "/events" else {})
            responses = operation["responses"]
            for status, description in errors.items():
                responses[status] = _response(description)
            if method == "post":
                responses["400"] = _response("the request does not match its schema")
                responses["400"]["content"]["application/json"]["schema"] = {
                    "$ref": "#/components/schemas/BadRequestBody"
                }
            if path == "/events" and "200" in responses:
                responses["207"] = {**responses["200"], "description": "some events rejected"}
                responses["202"] = {
                    "description": "cluster profile: the valid events appended to the stream"
                }
    return out
