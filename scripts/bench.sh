#!/usr/bin/env bash
# `make bench`: provision, build release, start a server on a private port, run `mnemo bench`
# against it (arguments are passed on, e.g. --memories 1000000), stop everything.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/env.sh)"
cargo build --release -p mnemo
port=${MNEMO_BENCH_PORT:-18181}
export MNEMO_ADMIN_KEY=${MNEMO_BENCH_ADMIN_KEY:-mnemo-bench-admin-key-$$}
# The benchmark provisions a thousand tenants and drives each key as fast as the server answers:
# rate limits far above what it can reach keep the buckets on the request path (their cost is
# measured) without refusing anything.
export MNEMO_RATE_LIMIT_PER_KEY=1000000 MNEMO_RATE_LIMIT_BURST=1000000
export MNEMO_RATE_LIMIT_PER_TENANT=1000000 MNEMO_RATE_LIMIT_TENANT_BURST=1000000
export MNEMO_RATE_LIMIT_ADMIN=1000000 MNEMO_RATE_LIMIT_ADMIN_BURST=1000000
MNEMO_LOG=${MNEMO_LOG:-warn} MNEMO_BIND=127.0.0.1:$port ./target/release/mnemo serve &
server=$!
cleanup() {
  kill -TERM $server 2>/dev/null || true
  wait $server 2>/dev/null || true
  [ -n "${MNEMO_PG_BIN:-}" ] && bash scripts/stop-pg.sh
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.2
done
./target/release/mnemo bench --url "http://127.0.0.1:$port" "$@"
