# The two commands of the README: `make demo` and `make test`. Each bootstraps what it needs.
SHELL := /bin/bash
VENV := .venv/bin
DENO := node_modules/.bin/deno
SQL_PATHS := supabase/schemas supabase/migrations supabase/tests supabase/seed.sql pydeploy/sql
WEB_SRC := $(shell find web/src web/standalone -type f 2>/dev/null) web/build.mjs web/package-lock.json

.PHONY: bootstrap demo test lint lint-python lint-sql lint-web lint-cloudflare web test-web pytest screenshot down clean

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap web
	@scripts/demo.sh

test: bootstrap lint web test-web pytest

lint: lint-python lint-sql lint-web lint-cloudflare

lint-python:
	$(VENV)/ruff check pydeploy tests

lint-sql:
	$(VENV)/sqlfluff lint --processes 2 $(wildcard $(SQL_PATHS))

# The dashboard's TypeScript: type-checked (tsc), linted and format-checked (deno lint/fmt).
lint-web:
	cd web && node_modules/.bin/tsc --noEmit -p tsconfig.json
	$(DENO) lint --config web/deno.lint.json
	$(DENO) fmt --check --config web/deno.lint.json

# The Cloudflare Pages middleware and /api/health (cloudflare/): type-checked, linted, formatted.
lint-cloudflare:
	cd cloudflare && ../$(DENO) check functions/_middleware.ts functions/api/health.ts test/pages_router.ts
	cd cloudflare && ../$(DENO) lint && ../$(DENO) fmt --check

# The standalone page `pydeploy dashboard` serves (web/dist, not committed): esbuild + Tailwind.
web: web/dist/index.html

web/dist/index.html: $(WEB_SRC)
	cd web && node build.mjs

test-web:
	cd web && node_modules/.bin/vitest run

pytest:
	$(VENV)/pytest -p no:cacheprovider

# The README's picture: the dashboard on the demo data, by the browser test that checks the layout.
screenshot: bootstrap web
	DASHBOARD_SCREENSHOT=docs/images/dashboard.png $(VENV)/pytest -p no:cacheprovider -q \
	  tests/test_dashboard_browser.py -k layout

down:
	$(VENV)/pydeploy down

clean:
	-$(VENV)/pydeploy down --purge
	rm -rf .venv node_modules web/node_modules web/dist
