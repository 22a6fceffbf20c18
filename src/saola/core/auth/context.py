"""Who is calling: a user or a source system, with role, permissions and unit scope."""

from __future__ import annotations

import fnmatch
import uuid
from dataclasses import dataclass, field
from typing import Literal

from saola.core.errors import Forbidden


@dataclass(frozen=True)
class Actor:
    """The caller of a service: every list, read and write is checked against it.

    scope_path is the materialised path of the caller's unit (for example 'VN.68'): the caller sees
    that unit and everything beneath it, nothing else.
    """

    kind: Literal["user", "source", "system"]
    id: uuid.UUID | None
    name: str
    role: str
    scope_code: str
    scope_path: str
    permissions: frozenset[str] = field(default_factory=frozenset)
    source_id: int | None = None
    allowed_writes: tuple[str, ...] = ()

    def can(self, permission: str) -> bool:
        """True when the actor holds the permission (or '*')."""
        return "*" in self.permissions or permission in self.permissions

    def require(self, permission: str) -> None:
        """Raise Forbidden unless the actor holds the permission."""
        if not self.can(permission):
            raise Forbidden(f"{self.kind} {self.name!r} lacks permission {permission!r}")

    def may_write(self, kind: str, code: str) -> bool:
        """True when this actor may write `kind` (observations, events, entities) for `code`.

        Users are limited by permissions and scope only; a source system also by its allowed_writes
        patterns, such as 'observations:env.*' or 'entities:station.air'.
        """
        if self.kind != "source":
            return True
        target = f"{kind}:{code}"
        return any(fnmatch.fnmatchcase(target, pattern) for pattern in self.allowed_writes)

    def sees_path(self, path: str) -> bool:
        """True when a unit with this materialised path lies inside the actor's scope."""
        return path == self.scope_path or path.startswith(self.scope_path + ".")


def system_actor(name: str = "system") -> Actor:
    """An actor for the kernel's own work (migrations, demo seeding): whole country, every permission."""
    return Actor(kind="system", id=None, name=name, role="admin", scope_code="VN", scope_path="VN",
                 permissions=frozenset({"*"}))
