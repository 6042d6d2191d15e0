"""`python -m pydeploy.cli …` (how `pydeploy up` starts the pg_net stand-in worker)."""

from pydeploy.cli.main import main

main()
