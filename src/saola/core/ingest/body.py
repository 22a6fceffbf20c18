"""Reading a batch body: gzip (with a cap on the inflated size), orjson, and the {"items": [...]} envelope."""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from starlette.requests import Request

from saola.core.errors import DomainError, FieldError, ValidationFailed

JSON_TYPES = ("application/json", "text/json")


class PayloadTooLarge(DomainError):
    """The body, or what it inflates to, is larger than allowed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 413, "body_too_large")


class UnsupportedMediaType(DomainError):
    """The body's type or encoding is not one the door reads."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 415, "unsupported_media_type")


class BadEncoding(DomainError):
    """The body claims an encoding it does not have (for example broken gzip)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 400, "bad_encoding")


def gunzip(data: bytes, *, max_bytes: int) -> bytes:
    """Inflate gzip data, refusing with PayloadTooLarge as soon as the output would pass max_bytes."""
    out: list[bytes] = []
    size = 0
    rest = data
    while rest:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = inflater.decompress(rest, max_bytes - size + 1)
        except zlib.error as exc:
            raise BadEncoding(f"the body is not valid gzip: {exc}") from None
        size += len(chunk)
        if size > max_bytes or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"the body inflates to more than {max_bytes} bytes")
        if not inflater.eof:
            raise BadEncoding("the gzip body is truncated")
        out.append(chunk)
        rest = inflater.unused_data  # a second gzip member, as `cat a.gz b.gz` makes
    return b"".join(out)


def decode(raw: bytes, *, encoding: str | None, max_bytes: int) -> bytes:
    """The body's bytes after its Content-Encoding (identity or gzip)."""
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return raw
    if enc in ("gzip", "x-gzip"):
        return gunzip(raw, max_bytes=max_bytes)
    raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; send gzip or no encoding")


def parse_json(data: bytes, loc: list[str | int] | None = None) -> Any:
    """orjson.loads, with a 422 naming where the text stops being JSON (NaN and Infinity are not JSON)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        where = loc or ["body"]
        raise ValidationFailed(f"the body is not valid JSON: {exc}", [FieldError(where, str(exc), "json_invalid")]) \
            from None


def batch_items(payload: Any, *, max_items: int) -> list[Any]:
    """The items of {"items": [...]} (or of a bare JSON array), 1 to max_items of them."""
    if isinstance(payload, dict):
        extra = sorted(set(payload) - {"items"})
        if extra:
            raise ValidationFailed("the body holds only `items`", [
                FieldError(["body", extra[0]], "Extra inputs are not permitted", "extra_forbidden")])
        if "items" not in payload:
            raise ValidationFailed("the body needs `items`", [
                FieldError(["body", "items"], "Field required", "missing")])
        items = payload["items"]
    else:
        items = payload
    if not isinstance(items, list):
        raise ValidationFailed("`items` must be a JSON array",
                               [FieldError(["body", "items"], "Input should be a valid list", "list_type")])
    if not 1 <= len(items) <= max_items:
        raise ValidationFailed(f"a batch holds 1 to {max_items} items, got {len(items)}",
                               [FieldError(["body", "items"], f"expected 1 to {max_items} items, got {len(items)}",
                                           "too_long" if items else "too_short")])
    return items


async def read_batch(request: Request, *, max_bytes: int, max_items: int) -> list[Any]:
    """Read, inflate and parse a batch request's body into its list of items."""
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype and ctype not in JSON_TYPES and not ctype.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type {ctype!r} is not JSON; send application/json")
    raw = await request.body()
    data = decode(raw, encoding=request.headers.get("content-encoding"), max_bytes=max_bytes)
    return batch_items(parse_json(data), max_items=max_items)
