"""Case types as data: the kernel's own status flows and SLA policies, and the registry packs extend.

Every case type is a CaseTypeDefinition (saola.packs.definitions). The kernel declares incident, directive,
task and a basic citizen_report through the saola_case_types hook, the same way a pack declares its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

from saola.core.errors import FieldError, ValidationFailed
from saola.packs.definitions import CaseTypeDefinition

PRIORITIES: dict[str, str] = {
    "low": "Thấp",
    "normal": "Bình thường",
    "high": "Cao",
    "critical": "Khẩn cấp",
}
"""Priorities and their Vietnamese labels, lowest first."""

PRIORITY_ALIASES: dict[str, str] = {"urgent": "critical", "medium": "normal", "info": "low"}
"""Other words callers use (alert severities, for one) and the priority each means."""

HOUR = 60
DAY = 24 * HOUR

INCIDENT = CaseTypeDefinition(
    type="incident", name_vi="Sự cố", name_en="Incident", prefix="SC",
    initial_status="open",
    transitions={
        "open": ("acknowledged", "in_progress", "cancelled"),
        "acknowledged": ("in_progress", "cancelled"),
        "in_progress": ("resolved", "cancelled"),
        "resolved": ("closed", "in_progress"),
    },
    status_labels={"open": "Mới", "acknowledged": "Đã tiếp nhận", "in_progress": "Đang xử lý",
                   "resolved": "Đã xử lý", "closed": "Đã đóng", "cancelled": "Đã hủy"},
    resolved_statuses=("resolved", "closed"),
    closed_statuses=("closed", "cancelled"),
    response_statuses=("acknowledged", "in_progress"),
    sla_minutes={"critical": 4 * HOUR, "high": DAY, "normal": 3 * DAY, "low": 7 * DAY},
    first_response_minutes={"critical": 15, "high": 30, "normal": 2 * HOUR, "low": 8 * HOUR},
    reason_required=("cancelled",),
    checklist_gate=("resolved", "closed"),
    escalation_after_minutes=(0, DAY, 3 * DAY),
)

CITIZEN_REPORT = CaseTypeDefinition(
    type="citizen_report", name_vi="Phản ánh hiện trường", name_en="Citizen report", prefix="PA",
    initial_status="received",
    transitions={
        "received": ("forwarded", "rejected"),
        "forwarded": ("in_progress", "returned"),
        "in_progress": ("resolved", "returned"),
        "returned": ("forwarded", "rejected"),
        "resolved": ("rated", "reopened"),
        "reopened": ("in_progress", "returned"),
    },
    status_labels={"received": "Đã tiếp nhận", "forwarded": "Đã chuyển xử lý", "in_progress": "Đang xử lý",
                   "resolved": "Đã xử lý", "rated": "Đã đánh giá", "reopened": "Mở lại",
                   "rejected": "Từ chối", "returned": "Trả lại"},
    resolved_statuses=("resolved", "rated"),
    closed_statuses=("rated", "rejected"),
    response_statuses=("forwarded",),
    # HCMC 1022: forward to the handling unit within 5 minutes, answer the citizen within 5 days.
    sla_minutes={"*": 5 * DAY},
    first_response_minutes={"*": 5},
    reason_required=("rejected", "returned", "reopened"),
    escalation_after_minutes=(0, 2 * DAY, 5 * DAY),
)

DIRECTIVE = CaseTypeDefinition(
    type="directive", name_vi="Chỉ đạo", name_en="Directive", prefix="CD",
    initial_status="issued",
    transitions={
        "issued": ("in_progress", "completed", "cancelled"),
        "in_progress": ("completed", "cancelled"),
        "completed": ("in_progress",),
    },
    status_labels={"issued": "Đã ban hành", "in_progress": "Đang thực hiện", "completed": "Hoàn thành",
                   "cancelled": "Đã hủy"},
    resolved_statuses=("completed",),
    closed_statuses=("cancelled",),
    sla_minutes={"*": 7 * DAY},
    reason_required=("cancelled",),
    # The directive itself does not escalate: its tasks do, each at its recipient.
    escalation_after_minutes=(),
)

TASK = CaseTypeDefinition(
    type="task", name_vi="Nhiệm vụ", name_en="Task", prefix="NV",
    initial_status="assigned",
    transitions={
        "assigned": ("in_progress", "done", "returned", "cancelled"),
        "in_progress": ("done", "returned", "cancelled"),
        "returned": ("assigned", "cancelled"),
        "done": ("in_progress",),
    },
    status_labels={"assigned": "Đã giao", "in_progress": "Đang thực hiện", "done": "Hoàn thành",
                   "returned": "Trả lại", "cancelled": "Đã hủy"},
    resolved_statuses=("done",),
    closed_statuses=("cancelled",),
    response_statuses=("in_progress", "done"),
    sla_minutes={"*": 7 * DAY},
    reason_required=("returned", "cancelled"),
    escalation_after_minutes=(0, 2 * DAY),
    remind_before_minutes=(DAY, 2 * HOUR),
)

KERNEL_CASE_TYPES: list[CaseTypeDefinition] = [INCIDENT, CITIZEN_REPORT, DIRECTIVE, TASK]


@dataclass(frozen=True)
class Flow:
    """A case type with the derived sets the services need."""

    definition: CaseTypeDefinition

    @property
    def type(self) -> str:
        """The case type."""
        return self.definition.type

    @property
    def statuses(self) -> set[str]:
        """Every status of the flow."""
        d = self.definition
        return {d.initial_status, *d.transitions, *(s for nxt in d.transitions.values() for s in nxt)}

    def allowed(self, status: str) -> tuple[str, ...]:
        """Statuses a case in `status` may move to."""
        return self.definition.transitions.get(status, ())

    def is_open(self, status: str) -> bool:
        """True while the SLA clock runs: neither resolved nor closed."""
        d = self.definition
        return status not in d.resolved_statuses and status not in d.closed_statuses

    def is_resolved(self, status: str) -> bool:
        """True for statuses that count as handled."""
        return status in self.definition.resolved_statuses

    def label(self, status: str) -> str:
        """The Vietnamese label of a status (the status itself when none is declared)."""
        return self.definition.status_labels.get(status, status)

    def minutes(self, table: dict[str, int], priority: str) -> int | None:
        """Minutes for a priority from an SLA table ('*' is the fallback); None when there is no limit."""
        return table.get(priority, table.get("*"))


def check_definition(d: CaseTypeDefinition) -> None:
    """Refuse a definition whose flow does not hold together (unknown statuses, bad SLA keys)."""
    flow = Flow(d)
    problems = []
    for name, group in (("resolved_statuses", d.resolved_statuses), ("closed_statuses", d.closed_statuses),
                        ("response_statuses", d.response_statuses), ("reason_required", d.reason_required),
                        ("checklist_gate", d.checklist_gate)):
        problems += [f"{name} names unknown status {s!r}" for s in group if s not in flow.statuses]
    problems += [f"status {s!r} has no label" for s in flow.statuses if s not in d.status_labels]
    for name, table in (("sla_minutes", d.sla_minutes), ("first_response_minutes", d.first_response_minutes)):
        problems += [f"{name} names unknown priority {p!r}" for p in table if p != "*" and p not in PRIORITIES]
        problems += [f"{name}[{p!r}] must be positive" for p, v in table.items() if v <= 0]
    if not d.prefix.isalnum() or len(d.prefix) > 8:
        problems.append("prefix must be 1 to 8 letters or digits")
    if problems:
        raise ValueError(f"case type {d.type!r}: " + "; ".join(problems))


_extra: dict[str, CaseTypeDefinition] = {}


@lru_cache(maxsize=1)
def _declared() -> dict[str, CaseTypeDefinition]:
    from saola.packs.manager import PackError, get_plugin_manager

    merged: dict[str, CaseTypeDefinition] = {}
    for group in get_plugin_manager().hook.saola_case_types():
        for d in group or []:
            if d.type in merged and merged[d.type] != d:
                raise PackError(f"case type {d.type!r} is declared twice with different definitions")
            check_definition(d)
            merged[d.type] = d
    return merged


def case_types() -> dict[str, CaseTypeDefinition]:
    """Every known case type: declared through the saola_case_types hook, plus any registered at run time."""
    return {**_declared(), **_extra}


def register_case_type(definition: CaseTypeDefinition) -> None:
    """Add or replace a case type at run time (for packs loaded outside the plugin manager, and tests)."""
    check_definition(definition)
    _extra[definition.type] = definition


@contextmanager
def temporary_case_type(definition: CaseTypeDefinition) -> Iterator[CaseTypeDefinition]:
    """Register a case type for the duration of a block (tests)."""
    before = _extra.get(definition.type)
    register_case_type(definition)
    try:
        yield definition
    finally:
        if before is None:
            _extra.pop(definition.type, None)
        else:
            _extra[definition.type] = before


def flow_for(case_type: str, loc: list[str | int] | None = None) -> Flow:
    """The flow of a case type; 422 naming the field when the type is unknown."""
    d = case_types().get(case_type)
    if d is None:
        where = loc or ["body", "case_type"]
        raise ValidationFailed(f"unknown case type {case_type!r}",
                               [FieldError(list(where), f"unknown case type {case_type!r}; known: "
                                           + ", ".join(sorted(case_types())))])
    return Flow(d)


def check_priority(priority: str, loc: list[str | int] | None = None) -> str:
    """The priority (aliases such as 'urgent' or an alert's 'medium' mapped); 422 naming the field otherwise."""
    priority = PRIORITY_ALIASES.get(priority, priority)
    if priority not in PRIORITIES:
        raise ValidationFailed(f"unknown priority {priority!r}",
                               [FieldError(list(loc or ["body", "priority"]),
                                           f"expected one of {', '.join(PRIORITIES)}")])
    return priority
