"""The demo province's agencies and one user per role (all flagged as demo, refused outside demo mode)."""

from __future__ import annotations

from dataclasses import dataclass

DEMO_PROVINCE = "68"  # Lâm Đồng
DEMO_WARD = "24781"  # Phường Xuân Hương - Đà Lạt

# (code, Vietnamese name, English name, kind)
PROVINCE_AGENCIES: list[tuple[str, str, str, str]] = [
    ("ubnd", "Ủy ban nhân dân tỉnh Lâm Đồng", "Lam Dong Provincial People's Committee", "people_committee"),
    ("so-nnmt", "Sở Nông nghiệp và Môi trường", "Department of Agriculture and Environment", "department"),
    ("so-yt", "Sở Y tế", "Department of Health", "department"),
    ("so-gddt", "Sở Giáo dục và Đào tạo", "Department of Education and Training", "department"),
    ("so-vhttdl", "Sở Văn hóa, Thể thao và Du lịch", "Department of Culture, Sports and Tourism", "department"),
    ("so-nv", "Sở Nội vụ", "Department of Home Affairs", "department"),
    ("so-xd", "Sở Xây dựng", "Department of Construction", "department"),
    ("ca", "Công an tỉnh Lâm Đồng", "Lam Dong Provincial Police", "police"),
]


@dataclass(frozen=True)
class DemoUser:
    """A demo account and what it shows."""

    username: str
    role: str
    scope: str
    full_name: str
    agency_code: str | None = None

    @property
    def password(self) -> str:
        """Demo passwords are public on purpose; demo accounts only work in demo mode."""
        return f"demo-{self.username}"


DEMO_USERS: list[DemoUser] = [
    DemoUser("admin", "admin", "VN", "Quản trị hệ thống"),
    DemoUser("lanhdao", "leader", DEMO_PROVINCE, "Lãnh đạo UBND tỉnh Lâm Đồng", "ubnd"),
    DemoUser("dieuhanh", "operator", DEMO_PROVINCE, "Cán bộ điều hành IOC"),
    DemoUser("so-nnmt", "agency_staff", DEMO_PROVINCE, "Cán bộ Sở Nông nghiệp và Môi trường", "so-nnmt"),
    DemoUser("xuanhuong", "agency_staff", DEMO_WARD, "Cán bộ UBND phường Xuân Hương - Đà Lạt"),
    DemoUser("tichhop", "integrator", DEMO_PROVINCE, "Cán bộ tích hợp CNTT"),
    DemoUser("khach", "viewer", DEMO_PROVINCE, "Người xem"),
]
