"""Domain errors raised by services; one handler in the app maps them to HTTP answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FieldError:
    """One problem with one field, located by its path (for example ['items', 3, 'value'])."""

    loc: list[str | int]
    msg: str
    type: str = "value_error"

    def as_dict(self) -> dict[str, Any]:
        """JSON form, shaped like FastAPI's validation errors."""
        return {"loc": self.loc, "msg": self.msg, "type": self.type}


@dataclass
class DomainError(Exception):
    """Base of every error a service raises on purpose."""

    message: str
    status_code: int = 400
    code: str = "bad_request"
    errors: list[FieldError] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message


class ValidationFailed(DomainError):
    """The input is wrong; errors name each field path. Nothing was written."""

    def __init__(self, message: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(message, 422, "validation_failed", errors or [])


class NotFound(DomainError):
    """The thing does not exist, or the caller may not know that it does."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 404, "not_found")


class Conflict(DomainError):
    """The change clashes with existing data (for example a duplicate name)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 409, "conflict")


class Unauthorized(DomainError):
    """No valid credentials were presented."""

    def __init__(self, message: str = "missing or invalid credentials") -> None:
        super().__init__(message, 401, "unauthorized")


class Forbidden(DomainError):
    """Valid credentials, but not allowed to do this here."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 403, "forbidden")
