#!/usr/bin/env bash
# Install what the project needs, idempotently and fast when everything is present:
# Debian packages (PostgreSQL 15, pg_cron, pgTAP, plpgsql_check, pg_prove, Prometheus,
# Alertmanager and postgres_exporter for the integration tests, Chromium for the dashboard's
# browser tests), the pinned Supabase
# CLI and Deno from npm into ./node_modules, and a .venv with pydeploy installed editable.
# As root it installs what is missing; otherwise it stops with the exact command to run.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(postgresql-15 postgresql-15-cron postgresql-15-pgtap postgresql-15-plpgsql-check
          libtap-parser-sourcehandler-pgtap-perl nodejs npm python3-venv make
          prometheus prometheus-alertmanager prometheus-postgres-exporter chromium)
is_root() { [ "$(id -u)" = 0 ]; }

missing=()
for p in "${APT_PKGS[@]}"; do
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
    python3-venv) python3 -c 'import ensurepip, venv' >/dev/null 2>&1 && continue ;;
    make) command -v make >/dev/null 2>&1 && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if is_root; then
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "bootstrap: missing Debian packages: ${missing[*]}" >&2
    echo "run as root: apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# Build inputs for the real pg_net and Supabase Vault (pydeploy builds them with PGXS when
# $PYDEPLOY_EXTENSIONS_SRC names the folder of their source archives). The server headers are
# pinned to the installed server's exact version: an unpinned postgresql-server-dev-15 would
# upgrade postgresql-15 itself under any running server, which then fails to load plpgsql.so.
server_version=$(dpkg-query -W -f='${Version}' postgresql-15 2>/dev/null || true)
dev_missing=()
if [ -n "$server_version" ] && [ "$(dpkg-query -W -f='${Version}' postgresql-server-dev-15 2>/dev/null || true)" != "$server_version" ]; then
  dev_missing+=("postgresql-server-dev-15=$server_version")
fi
for p in libcurl4-openssl-dev libsodium-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || dev_missing+=("$p")
done
if [ ${#dev_missing[@]} -gt 0 ]; then
  if is_root; then
    echo "bootstrap: installing build packages for pg_net and Vault: ${dev_missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${dev_missing[@]}" >/dev/null
  else
    echo "bootstrap: missing Debian packages: ${dev_missing[*]}" >&2
    echo "run as root: apt-get update && apt-get install -y ${dev_missing[*]}" >&2
    exit 1
  fi
fi

python3 - <<'PY' || { echo "bootstrap: Python >= 3.11 is required (python3 is older)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

# The Supabase CLI and Deno, pinned in package-lock.json. Their platform binaries come as
# optional npm dependencies, so no install script needs to download anything.
if [ ! -x node_modules/.bin/supabase ] || [ ! -x node_modules/.bin/deno ] \
   || ! cmp -s package-lock.json node_modules/.pydeploy-lock; then
  echo "bootstrap: npm ci (supabase CLI, deno)"
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.pydeploy-lock
fi

# The dashboard's build and test tools (web/package-lock.json: esbuild, React, supabase-js, uPlot,
# Tailwind, TypeScript, Vitest); their platform binaries come as optional npm dependencies too.
if [ ! -d web/node_modules ] || ! cmp -s web/package-lock.json web/node_modules/.pydeploy-lock; then
  echo "bootstrap: npm ci in web/ (dashboard build: esbuild, React, uPlot, Tailwind)"
  (cd web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  cp web/package-lock.json web/node_modules/.pydeploy-lock
fi

# The Edge Functions' npm: imports (pinned in supabase/functions/deno.lock), cached up front so
# that tests do not depend on a first download mid-run.
if [ ! -d supabase/functions/node_modules ] || [ supabase/functions/deno.lock -nt supabase/functions/node_modules ]; then
  echo "bootstrap: deno install (Edge Functions' npm dependencies)"
  (cd supabase/functions && ../../node_modules/.bin/deno install --quiet)
  touch supabase/functions/node_modules
fi

if [ ! -x .venv/bin/pydeploy ] || [ pyproject.toml -nt .venv/.pydeploy-stamp ]; then
  echo "bootstrap: creating .venv with pydeploy[dev]"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  touch .venv/.pydeploy-stamp
fi
