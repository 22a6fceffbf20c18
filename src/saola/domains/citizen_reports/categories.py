"""The default categories of citizen reports (after Ho Chi Minh City's 1022), written once by the pack's migration.

After that they are data: operators rename them, change their default agency or SLA, add or retire categories
through /api/citizen-reports/categories. default_agency_code is looked up along the report's unit path, the
commune first: 'ubnd' is the commune's People's Committee, 'so-xd' the province's Department of Construction.
"""

from __future__ import annotations

FORWARD_MINUTES = 5
"""Default time to forward a report to its handling agency (HCMC 1022)."""

ANSWER_MINUTES = 5 * 24 * 60
"""Default time to answer the citizen: five days."""

# (code, Vietnamese name, English name, default agency code)
DEFAULT_CATEGORIES: list[tuple[str, str, str, str]] = [
    ("traffic", "Giao thông", "Traffic", "so-xd"),
    ("water", "Cấp thoát nước", "Water supply and drainage", "so-xd"),
    ("trees", "Cây xanh", "Trees", "ubnd"),
    ("lighting", "Chiếu sáng", "Lighting", "so-xd"),
    ("electricity", "Điện", "Electricity", "dien-luc"),
    ("telecom", "Viễn thông", "Telecom", "so-khcn"),
    ("public_transport", "Giao thông công cộng", "Public transport", "so-xd"),
    ("environment", "Môi trường", "Environment", "so-nnmt"),
    ("urban_order", "Trật tự đô thị", "Urban order", "ubnd"),
    ("health", "Y tế", "Health", "so-yt"),
    ("tourism", "Du lịch", "Tourism", "so-vhttdl"),
]


def default_rows() -> list[dict[str, object]]:
    """The default categories as rows of citizen_report_categories."""
    return [{"code": code, "name_vi": vi, "name_en": en, "default_agency_code": agency,
             "forward_minutes": FORWARD_MINUTES, "answer_minutes": ANSWER_MINUTES, "position": (i + 1) * 10,
             "active": True} for i, (code, vi, en, agency) in enumerate(DEFAULT_CATEGORIES)]
