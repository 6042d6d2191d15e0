"""What every stage of a benchmark run works with: its options, its output, its databases, its report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from pydeploy.bench.cluster import Cluster
from pydeploy.bench.data import Scale
from pydeploy.bench.measure import machine
from pydeploy.bench.report import Report

Say = Callable[[str], None]


Bar = Callable[[str, int, int], None]


@dataclass
class BenchOptions:
    admin_url: str  # a database of the cluster the bench databases are created in
    scale: Scale = field(default_factory=Scale)
    repeat: int = 10
    keep: bool = False
    fresh: bool = False
    quick: bool = False
    writers: int = 4
    write_seconds: float = 10.0
    write_rounds: int = 8
    migrate_rounds: int = 3
    ab_ref: str | None = None  # git revision to compare with (--ab)


class Run:
    """One benchmark run: the stages (setup, reads, writes, retention) read and add to it."""

    def __init__(self, opts: BenchOptions, say: Say, bar: Bar) -> None:
        self.opts = opts
        self.say = say
        self.bar = bar
        self.cluster = Cluster(opts.admin_url)
        self.report = Report(machine(), asdict(opts.scale) | {"quick": opts.quick, "repeat": opts.repeat})
