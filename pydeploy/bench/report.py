"""The benchmark's results: one Row per figure (median, min, max, target), gathered in a Report."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Row:
    """One figure: the median of n runs (with min and max), its target and whether it meets it."""

    group: str
    name: str
    unit: str
    median: float | None
    low: float | None = None
    high: float | None = None
    n: int = 1
    target: str = ""
    ok: bool | None = None
    note: str = ""

    @property
    def status(self) -> str:
        return "" if self.ok is None else ("PASS" if self.ok else "MISS")


def summarize(group: str, name: str, samples: list[float], unit: str = "ms", *, target: str = "",
              check: Callable[[float], bool] | None = None, note: str = "") -> Row:
    med = statistics.median(samples) if samples else None
    ok = None if check is None or med is None else bool(check(med))
    return Row(group, name, unit, med, min(samples) if samples else None, max(samples) if samples else None,
               len(samples), target, ok, note)


@dataclass
class Report:
    machine: dict[str, Any]
    scale: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)
    setup: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def to_json(self) -> dict[str, Any]:
        rows = [asdict(r) | {"status": r.status} for r in self.rows]
        return {
            "machine": self.machine, "scale": self.scale, "data": self.data, "setup": self.setup,
            "rows": rows, "details": self.details, "wall_seconds": round(self.wall_seconds, 1),
            "targets": {"pass": sum(r.ok is True for r in self.rows), "miss": sum(r.ok is False for r in self.rows)},
        }
