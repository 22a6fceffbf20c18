"""The new readings of a committed batch, as the bus carries them to subscribers (rules, live stream, packs).

A batch of ten thousand readings holds a few thousand series and a handful of distinct times, so it is kept as
columns grouped in runs of one series (indicator, unit, entity) rather than as ten thousand dictionaries: cheap to
build at ingest, to send across workers (it is a packed bus value, see saola.bus.codec) and to filter by series,
which is what subscribers do first (the rules engine looks up candidate rules once per series, the live stream keeps
the series in a client's scope). It still reads as a sequence of the item dictionaries subscribers always got:
{"indicator", "unit", "entity", "ts" (ISO 8601), "value", "quality"}.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, overload

from saola.bus.codec import register

Run = tuple[str, str, "str | None", int, int]  # indicator, unit, entity, first index, end index (exclusive)


@register
class LiveReadings(Sequence[dict[str, Any]]):
    """Readings in runs of one series; a read-only sequence of item dictionaries."""

    PACKED_AS: ClassVar[str] = "readings"
    __slots__ = ("_items", "ends", "qualities", "series", "time_index", "times", "values")

    def __init__(self, series: Sequence[Sequence[Any]], ends: list[int], times: list[str],
                 time_index: list[int], values: list[float], qualities: list[int]) -> None:
        self.series = series  # (indicator, unit, entity) of each run: tuples, or lists after the bus
        self.ends = ends  # end index (exclusive) of each run, increasing
        self.times = times  # distinct ISO 8601 times
        self.time_index = time_index  # per reading: its position in times
        self.values = values
        self.qualities = qualities
        self._items: list[dict[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"<LiveReadings {len(self.values)} readings in {len(self.series)} series>"

    def _item(self, run: int, k: int) -> dict[str, Any]:
        indicator, unit, entity = self.series[run]
        return {"indicator": indicator, "unit": unit, "entity": entity, "ts": self.times[self.time_index[k]],
                "value": self.values[k], "quality": self.qualities[k]}

    @overload
    def __getitem__(self, k: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, k: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, k: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError("reading index out of range")
        return self._item(bisect_right(self.ends, k), k)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        start = 0
        for run, end in enumerate(self.ends):
            for k in range(start, end):
                yield self._item(run, k)
            start = end

    def runs(self) -> Iterator[Run]:
        """(indicator, unit, entity, start, end) of each series' run, in order."""
        start = 0
        for (indicator, unit, entity), end in zip(self.series, self.ends, strict=True):
            yield indicator, unit, entity, start, end
            start = end

    def items_of(self, run: Run) -> list[dict[str, Any]]:
        """The item dictionaries of one run."""
        indicator, unit, entity, start, end = run
        times, index, values, qualities = self.times, self.time_index, self.values, self.qualities
        return [{"indicator": indicator, "unit": unit, "entity": entity, "ts": times[index[k]], "value": values[k],
                 "quality": qualities[k]} for k in range(start, end)]

    def as_list(self) -> list[dict[str, Any]]:
        """Every item dictionary, made once and shared (treat it as read-only): what a national client's live
        stream sends for every batch."""
        if self._items is None:
            self._items = list(self)
        return self._items

    def where(self, keep: Callable[[str, str, str | None], bool]) -> list[dict[str, Any]]:
        """The item dictionaries of the series keep(indicator, unit, entity) accepts, in order."""
        out: list[dict[str, Any]] = []
        for run in self.runs():
            if keep(run[0], run[1], run[2]):
                out.extend(self.items_of(run))
        return out

    def to_wire(self) -> dict[str, Any]:
        """The columns as JSON-ready lists (saola.bus.codec)."""
        return {"series": self.series, "ends": self.ends, "times": self.times, "t": self.time_index,
                "v": self.values, "q": self.qualities}

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> LiveReadings:
        """Rebuild from to_wire's form (each series arrives as a list, which unpacks as its tuple did)."""
        return cls(wire["series"], wire["ends"], wire["times"], wire["t"], wire["v"], wire["q"])
