"""`pydeploy bench`: the monitoring package at production scale, against the spec's own queries.

Two databases in one cluster hold the same generated data (data): `bench_plain` has the app's
tables only (keys and checks, none of the monitoring's indexes) and `bench_monitored` is a file
copy of it with every migration applied on top (cluster, setup). Then, in one run (runner):
each view and health(), each check function, a cron cycle, the spec's three queries next to the
views that answer them (reads); the app's write throughput in both databases (writes: pgbench,
INSERT then two status UPDATEs); the scheduled retention procedure, with a probe session
measuring how long it blocks the app (retention); migrate on an empty database, and this
process's peak memory. Every timing is repeated: median, min and max (measure); each figure is
shown against its target (report).
"""

from pydeploy.bench.cluster import create_app_tables
from pydeploy.bench.context import BenchOptions
from pydeploy.bench.queries import SPEC_QUERIES
from pydeploy.bench.report import Report, Row
from pydeploy.bench.runner import run

__all__ = ["SPEC_QUERIES", "BenchOptions", "Report", "Row", "create_app_tables", "run"]
