"""NGSI-LD errors as ProblemDetails (RFC 7807) with the ETSI error type URIs, and the mapping of kernel errors."""

from __future__ import annotations

import logging
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import Request

from saola.core.errors import Conflict, DomainError, FieldError, Forbidden, NotFound, Unauthorized, ValidationFailed

log = logging.getLogger(__name__)

ETSI_ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
# The ETSI list has no authentication or generic conflict type: those answers carry Saola's own URIs.
SAOLA_ERRORS = "urn:saola:errors:"

_TITLES = {
    "InvalidRequest": "The request is not well-formed",
    "BadRequestData": "The request contains bad data",
    "AlreadyExists": "The entity already exists",
    "OperationNotSupported": "The operation is not supported",
    "ResourceNotFound": "The resource was not found",
    "InternalError": "Internal error",
    "TooComplexQuery": "The query is too complex",
    "TooManyResults": "Too many results",
    "LdContextNotAvailable": "The JSON-LD @context is not available",
    "Unauthorized": "Missing or invalid credentials",
    "Forbidden": "Not allowed",
    "Conflict": "The change conflicts with stored data",
    "UnsupportedMediaType": "Unsupported media type",
}
_STATUS = {
    "InvalidRequest": 400, "BadRequestData": 400, "AlreadyExists": 409, "OperationNotSupported": 422,
    "ResourceNotFound": 404, "InternalError": 500, "TooComplexQuery": 403, "TooManyResults": 403,
    "LdContextNotAvailable": 503, "Unauthorized": 401, "Forbidden": 403, "Conflict": 409,
    "UnsupportedMediaType": 415,
}
_SAOLA_KINDS = {"Unauthorized", "Forbidden", "Conflict", "UnsupportedMediaType"}


class NgsiError(DomainError):
    """An NGSI-LD error: its ETSI kind (BadRequestData, ResourceNotFound ...), a detail and optional row errors.

    `problems` are extension members of the ProblemDetails, e.g. the row errors of a rejected batch.
    """

    def __init__(self, kind: str, detail: str, *, problems: list[dict[str, Any]] | None = None,
                 errors: list[FieldError] | None = None) -> None:
        super().__init__(detail, _STATUS[kind], kind, errors or [])
        self.kind = kind
        self.problems = problems or []


def type_uri(kind: str) -> str:
    """The ProblemDetails type URI of an error kind."""
    return (SAOLA_ERRORS if kind in _SAOLA_KINDS else ETSI_ERRORS) + kind


def problem_body(kind: str, detail: str, **extra: Any) -> dict[str, Any]:
    """A ProblemDetails object."""
    return {"type": type_uri(kind), "title": _TITLES.get(kind, kind), "status": _STATUS.get(kind, 400),
            "detail": detail, **extra}


def bad_request(detail: str, loc: list[str | int] | None = None) -> NgsiError:
    """A BadRequestData error, naming the offending field when given."""
    return NgsiError("BadRequestData", detail, errors=[FieldError(loc, detail)] if loc else None)


def _kind_of(exc: DomainError) -> str:
    if isinstance(exc, NgsiError):
        return exc.kind
    if isinstance(exc, ValidationFailed):
        return "BadRequestData"
    if isinstance(exc, NotFound):
        return "ResourceNotFound"
    if isinstance(exc, Unauthorized):
        return "Unauthorized"
    if isinstance(exc, Forbidden):
        return "Forbidden"
    if isinstance(exc, Conflict):
        return "AlreadyExists" if "already exists" in exc.message else "Conflict"
    return "BadRequestData" if exc.status_code < 500 else "InternalError"


def problem_response(_request: Request, exc: Exception) -> JSONResponse:
    """The ProblemDetails answer of any error raised inside an NGSI-LD route."""
    headers: dict[str, str] | None = None
    if isinstance(exc, DomainError):
        kind = _kind_of(exc)
        extra: dict[str, Any] = {}
        if exc.errors:
            extra["errors"] = [e.as_dict() for e in exc.errors]
        if isinstance(exc, NgsiError) and exc.problems:
            extra["errors"] = exc.problems
        body = problem_body(kind, exc.message, **extra)
        if kind == "Unauthorized":
            headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, RequestValidationError):
        found = exc.errors()
        errors = [{"loc": list(e.get("loc", [])), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in found]
        where = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors[:5])
        body = problem_body("BadRequestData", f"invalid request at {where}", errors=errors)
    elif isinstance(exc, HTTPException):
        kind = "ResourceNotFound" if exc.status_code == 404 else "InvalidRequest"
        body = {**problem_body(kind, str(exc.detail)), "status": exc.status_code}
        headers = dict(exc.headers or {}) or None
    else:
        log.exception("NGSI-LD request failed", exc_info=exc)
        body = problem_body("InternalError", "the server failed to handle the request")
    return JSONResponse(body, status_code=body["status"], headers=headers)


EXCEPTION_HANDLERS = {DomainError: problem_response, RequestValidationError: problem_response,
                      HTTPException: problem_response, Exception: problem_response}
"""Handlers the NGSI-LD routes use instead of the application's (which answer in the kernel's own error shape)."""
