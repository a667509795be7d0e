#!/usr/bin/env bash
# `make run`: provision, build, migrate and serve. Ctrl-C stops the server, then the PostgreSQL it started.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/env.sh)"
if [ -n "${MNEMO_STARTED_PG:-}" ] || [ -n "${MNEMO_PG_BIN:-}" ]; then
  trap 'bash scripts/stop-pg.sh' EXIT
fi
cargo build --release -p mnemo
./target/release/mnemo migrate
echo "mnemo: serving on http://${MNEMO_BIND:-127.0.0.1:8080} (docs at /docs); Ctrl-C stops" >&2
# In the foreground: Ctrl-C reaches the server, which drains requests and exits; the EXIT trap
# then stops the embedded PostgreSQL.
./target/release/mnemo serve "$@"
