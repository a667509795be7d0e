#!/usr/bin/env bash
# The Python client's tests (clients/python) against the real server. Creates the venv
# .mnemo/venv-python-client (`pip install -e clients/python[test]` from PyPI; redone when
# clients/python/pyproject.toml changes), then runs pytest; arguments go to pytest.
#
# Needs DATABASE_URL (a PostgreSQL server with pgvector: the tests create and drop a database
# `mnemo_t_py_*` on it) and the model variables; `scripts/test.sh` provides both, or run
# `eval "$(bash scripts/env.sh)"` first. The server binary: MNEMO_BIN, else the workspace build's
# `$CARGO_TARGET_DIR/debug/mnemo` (or `target/debug/mnemo`), built with `cargo build -p mnemo`
# only when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
: "${DATABASE_URL:?DATABASE_URL is not set: run make test, or eval \"\$(bash scripts/env.sh)\" first}"

venv="$top/.mnemo/venv-python-client"
key=$(sha256sum clients/python/pyproject.toml | cut -c1-16)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.installed" 2>/dev/null)" != "$key" ]; then
  echo "test-python: creating $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -e "clients/python[test]"
  echo "$key" > "$venv/.installed"
fi

if [ -z "${MNEMO_BIN:-}" ]; then
  target="${CARGO_TARGET_DIR:-$top/target}"
  case "$target" in /*) ;; *) target="$top/$target" ;; esac
  MNEMO_BIN="$target/debug/mnemo"
  if [ ! -x "$MNEMO_BIN" ]; then
    cargo build -p mnemo
  fi
fi
export MNEMO_BIN

cd clients/python
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
