"""How a message's data crosses process boundaries (the Redis bus): JSON, with packed values declared by their owners.

Most data is plain JSON. A value that is large and regular (the new readings of an ingested batch: thousands of
records with the same fields) may instead be an object of a class registered here: it travels as the compact form its
`to_wire` gives, tagged with the class's `PACKED_AS`, and the receiving process rebuilds the object with
`from_wire`. Building and parsing ten thousand dictionaries per batch, twice (publish, and every worker's reader), was
the largest cost of ingest on a shared bus; columns of numbers parse several times faster.

Only top-level values of a message's data are looked at, so decoding costs a dictionary walk.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, TypeVar

import orjson

TAG = "$packed"


class Packed(Protocol):
    """A value that travels in a compact form of its own (see the module docstring)."""

    PACKED_AS: ClassVar[str]

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready compact form."""

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> Packed:
        """The object again, from what to_wire gave."""


_TYPES: dict[str, type[Packed]] = {}
P = TypeVar("P", bound=type[Packed])


def register(cls: P) -> P:
    """Class decorator: values of this class cross the bus in their packed form."""
    _TYPES[cls.PACKED_AS] = cls
    return cls


def _default(value: Any) -> Any:
    packed_as = getattr(type(value), "PACKED_AS", None)
    if packed_as is not None and _TYPES.get(packed_as) is type(value):
        wire = value.to_wire()
        wire[TAG] = packed_as
        return wire
    return str(value)  # datetimes, UUIDs and the like, as the JSON of any message


def encode(data: dict[str, Any]) -> bytes:
    """A message's data as JSON bytes, registered values packed."""
    return orjson.dumps(data, default=_default)


def decode(raw: bytes | str) -> dict[str, Any]:
    """A message's data from encode's bytes, packed values rebuilt (left as plain JSON when their class is unknown
    in this process)."""
    data = orjson.loads(raw)
    for key, value in data.items():
        if type(value) is dict and TAG in value:
            cls = _TYPES.get(value[TAG])
            if cls is not None:
                data[key] = cls.from_wire(value)
    return data
