#!/usr/bin/env bash
# `make test-citus`: Mnemo on a real Citus cluster on this machine.
#   1. builds Citus from the vendored source (../shared/vendor, or MNEMO_CITUS_TARBALL) into the
#      provisioned PostgreSQL once (cached with the rest of .mnemo/);
#   2. starts a coordinator and two workers on free loopback ports (fresh data directories);
#   3. `mnemo migrate` + `mnemo admin distribute` on the coordinator (timed, run twice: idempotent);
#   4. runs crates/mnemo/tests/citus.rs against a server on the coordinator;
#   5. stops the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
log() { printf 'test-citus: %s\n' "$*" >&2; }

tarball=${MNEMO_CITUS_TARBALL:-$top/../shared/vendor/citus-14.0.1.tar.gz}
citus_sha256=acfa9a77cd84a8e1edab26cca4a71355f39c910c01586da89560e0240d4b05ba
if [ ! -f "$tarball" ]; then
  log "no Citus source at $tarball (set MNEMO_CITUS_TARBALL to citus-14.0.1.tar.gz)"
  exit 1
fi

# The embedded PostgreSQL's binaries (Citus is built into them); env.sh also starts the single-node
# server, which is stopped at the end only if this script started it.
unset DATABASE_URL
eval "$(bash scripts/env.sh)"
pg_bin=$MNEMO_PG_BIN
pg_user=${MNEMO_PG_OS_USER:-mnemo-pg}
as_pg=()
[ "$(id -u)" = 0 ] && as_pg=(runuser -u "$pg_user" --)

# --- 1. Citus, built once ----------------------------------------------------------------------
if [ ! -f "$("$pg_bin/pg_config" --pkglibdir)/citus.so" ]; then
  echo "$citus_sha256  $tarball" | sha256sum -c --quiet
  missing=()
  for p in build-essential liblz4-dev libzstd-dev libcurl4-openssl-dev; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  fi
  build="$top/.mnemo/citus-build"
  rm -rf "$build" && mkdir -p "$build"
  tar -xzf "$tarball" -C "$build" --strip-components=1
  started=$(date +%s)
  log "building Citus into $("$pg_bin/pg_config" --pkglibdir)"
  # The wheel's PostgreSQL was compiled by a newer gcc; drop the one flag Debian's gcc rejects.
  cflags=$("$pg_bin/pg_config" --cflags | sed 's/-Wmissing-variable-declarations//g')
  (cd "$build" && PG_CONFIG="$pg_bin/pg_config" ./configure >configure.log 2>&1 \
     && make -j"$(nproc)" CFLAGS="$cflags" >make.log 2>&1 \
     && make install CFLAGS="$cflags" >install.log 2>&1) \
    || { tail -30 "$build"/*.log >&2; exit 1; }
  log "Citus built in $(( $(date +%s) - started )) s"
fi

# --- 2. the cluster ----------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
base="$top/.mnemo/citus-test"
rm -rf "$base" && mkdir -p "$base/run"
[ ${#as_pg[@]} -gt 0 ] && chown -R "$pg_user" "$base"
ports=("$(free_port)" "$(free_port)" "$(free_port)")
stop_cluster() {
  for i in 0 1 2; do
    [ -f "$base/n$i/postmaster.pid" ] && "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$base/n$i" -m immediate -w stop >/dev/null 2>&1
  done
  if [ -n "${MNEMO_STARTED_PG:-}" ]; then bash scripts/stop-pg.sh; fi
}
trap stop_cluster EXIT
started=$(date +%s)
for i in 0 1 2; do
  d="$base/n$i"
  mkdir -p "$d" && chmod 700 "$d"
  [ ${#as_pg[@]} -gt 0 ] && chown "$pg_user" "$d"
  "${as_pg[@]}" "$pg_bin/initdb" -D "$d" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$base/run/initdb$i.log" 2>&1
  cat >>"$d/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
shared_preload_libraries = 'citus'
wal_level = logical
max_connections = 300
shared_buffers = '128MB'
fsync = off
CONF
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$d" -l "$base/run/n$i.log" -w -o "-p ${ports[$i]} -k $base/run" start >/dev/null
done
for p in "${ports[@]}"; do
  "$pg_bin/createdb" -h 127.0.0.1 -p "$p" -U postgres mnemo
  "$pg_bin/psql" -h 127.0.0.1 -p "$p" -U postgres -d mnemo -qc "CREATE EXTENSION citus; CREATE EXTENSION vector;"
done
coord="$pg_bin/psql -h 127.0.0.1 -p ${ports[0]} -U postgres -d mnemo -qAt"
$coord -c "SELECT citus_set_coordinator_host('127.0.0.1', ${ports[0]})" >/dev/null
$coord -c "SELECT citus_add_node('127.0.0.1', ${ports[1]})" -c "SELECT citus_add_node('127.0.0.1', ${ports[2]})" >/dev/null
log "cluster up in $(( $(date +%s) - started )) s: coordinator ${ports[0]}, workers ${ports[1]} ${ports[2]}"

# --- 3. migrate and distribute -----------------------------------------------------------------
# Built as `make test` builds (whole workspace, tests included), so nothing is rebuilt for another
# feature set; that build also produces the binary.
cargo test -q --workspace --no-run 2>/dev/null || cargo test --workspace --no-run
bin="${CARGO_TARGET_DIR:-$top/target}/debug/mnemo"
export DATABASE_URL="postgres://postgres@127.0.0.1:${ports[0]}/mnemo"
MNEMO_LOG=warn "$bin" migrate >/dev/null
for run in first again; do
  started=$(date +%s%N)
  MNEMO_LOG=warn "$bin" admin distribute >"$base/run/distribute-$run.json"
  log "distribute ($run run) took $(( ($(date +%s%N) - started) / 1000000 )) ms"
done

# --- 4. the tests ------------------------------------------------------------------------------
export MNEMO_CITUS_URL="$DATABASE_URL"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace -E 'binary_id(mnemo::citus)' --run-ignored only --no-fail-fast "$@"
else
  cargo test --workspace --test citus -- --ignored "$@"
fi
