"""Each benchmark owns one marked section of docs/benchmarks.md; this replaces it and leaves the rest alone."""

from __future__ import annotations

from pathlib import Path

HEADER = ("# Benchmarks\n\nSide-by-side ratio benchmarks: Saola's path against the plainest way to do the same work "
          "on the same machine. Each section is written by its benchmark in `benchmarks/`.\n")


def replace_section(path: Path, start: str, end: str, section: str) -> None:
    """Put `section` (from `start` to `end`, markers included) in place of the old one, or append it."""
    section = section.rstrip("\n")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(HEADER + "\n" + section + "\n", encoding="utf-8")
        return
    current = path.read_text(encoding="utf-8")
    if start in current and end in current:
        before, rest = current.split(start, 1)
        path.write_text(before + section + rest.split(end, 1)[1], encoding="utf-8")
    else:
        path.write_text(current.rstrip("\n") + "\n\n" + section + "\n", encoding="utf-8")
