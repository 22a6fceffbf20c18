"""The kernel's roles and what each may do; packs add grants through the saola_permissions hook."""

from __future__ import annotations

ROLES: dict[str, str] = {
    "admin": "Quản trị hệ thống / administrator",
    "leader": "Lãnh đạo / leader",
    "operator": "Cán bộ điều hành IOC / IOC operator",
    "agency_staff": "Cán bộ cơ quan, xã / agency or commune staff",
    "integrator": "Cán bộ tích hợp CNTT / integrator",
    "viewer": "Người xem / viewer",
}

READ_ALL = [
    "units:read", "agencies:read", "indicators:read", "observations:read", "entities:read", "events:read",
    "rules:read", "alerts:read",
]

KERNEL_PERMISSIONS: dict[str, list[str]] = {
    "admin": ["*"],
    "leader": [*READ_ALL, "targets:write", "audit:read", "sources:read", "rules:write", "alerts:write",
               "alerts:publish"],
    "operator": [*READ_ALL, "entities:write", "events:write", "observations:write", "sources:read", "alerts:write",
                 "alerts:publish"],
    "agency_staff": [*READ_ALL, "events:write", "alerts:write"],
    "integrator": [
        *READ_ALL, "indicators:write", "targets:write", "observations:write", "entities:write",
        "events:write", "sources:read", "sources:write", "agencies:write", "rules:write",
    ],
    "viewer": list(READ_ALL),
}

# The operations loop's cases, SOPs and directives (docs/operations.md explains each grant).
CASE_PERMISSIONS: dict[str, list[str]] = {
    "leader": ["cases:read", "cases:write", "cases:assign", "directives:issue", "sops:read"],
    "operator": ["cases:read", "cases:write", "cases:assign", "sops:read", "sops:write"],
    "agency_staff": ["cases:read", "cases:write", "cases:assign", "sops:read"],
    "integrator": ["sops:read", "sops:write"],
    "viewer": ["cases:read", "sops:read"],
}
for _role, _grants in CASE_PERMISSIONS.items():
    KERNEL_PERMISSIONS[_role] = [*KERNEL_PERMISSIONS[_role], *_grants]
