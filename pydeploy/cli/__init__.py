"""The `pydeploy` command line (console script `pydeploy = pydeploy.cli:main`).

- main: the root group, up/down/url/migrate/status, error handling
- ops: channel, configure, rules, schedule, unschedule, silence, verify, report, monitor, receiver
- functions: `pydeploy functions serve`; bench: `pydeploy bench`; common: what they share
"""

from pydeploy.cli.main import cli, main

__all__ = ["cli", "main"]
