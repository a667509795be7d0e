#!/usr/bin/env bash
# `make test`: provision, then every test of the workspace against the real PostgreSQL (each test
# gets a fresh database cloned from a migrated template) and the real model; then the Python
# client's pytest suite (scripts/test-python.sh). Fails when either fails.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/env.sh)"
if [ -n "${MNEMO_PG_BIN:-}" ]; then
  trap 'bash scripts/stop-pg.sh' EXIT
  # Databases left by earlier runs (one per test).
  "$MNEMO_PG_BIN/psql" "$DATABASE_URL" -Atc \
    "SELECT format('DROP DATABASE IF EXISTS %I;', datname) FROM pg_database WHERE datname LIKE 'mnemo\_t\_%'" \
    | "$MNEMO_PG_BIN/psql" "$DATABASE_URL" -q >/dev/null
fi
status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@" || status=$?
else
  cargo test --workspace --no-fail-fast "$@" || status=$?
fi
# The Python client's suite against the binary that build produced (same DATABASE_URL).
bash scripts/test-python.sh || status=$?
exit "$status"
