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
]

KERNEL_PERMISSIONS: dict[str, list[str]] = {
    "admin": ["*"],
    "leader": [*READ_ALL, "targets:write", "audit:read", "sources:read"],
    "operator": [*READ_ALL, "entities:write", "events:write", "observations:write", "sources:read"],
    "agency_staff": [*READ_ALL, "events:write"],
    "integrator": [
        *READ_ALL, "indicators:write", "targets:write", "observations:write", "entities:write",
        "events:write", "sources:read", "sources:write", "agencies:write",
    ],
    "viewer": list(READ_ALL),
}
