# The two commands of the README: `make demo` and `make test`. Each bootstraps what it needs.
SHELL := /bin/bash
VENV := .venv/bin
SQL_PATHS := supabase/schemas supabase/migrations supabase/tests supabase/seed.sql pydeploy/sql

.PHONY: bootstrap demo test lint lint-python lint-sql pytest down clean

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	@scripts/demo.sh

test: bootstrap lint pytest

lint: lint-python lint-sql

lint-python:
	$(VENV)/ruff check pydeploy tests

lint-sql:
	$(VENV)/sqlfluff lint --processes 2 $(wildcard $(SQL_PATHS))

pytest:
	$(VENV)/pytest -p no:cacheprovider

down:
	$(VENV)/pydeploy down

clean:
	-$(VENV)/pydeploy down --purge
	rm -rf .venv node_modules
