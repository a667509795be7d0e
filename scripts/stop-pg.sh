#!/usr/bin/env bash
# Stops the embedded PostgreSQL that scripts/env.sh started (no-op for an external DATABASE_URL).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
[ -n "${MNEMO_PG_BIN:-}" ] || exit 0
if [ "$(id -u)" = 0 ]; then
  runuser -u "${MNEMO_PG_OS_USER:-mnemo-pg}" -- "$MNEMO_PG_BIN/pg_ctl" -D "$MNEMO_PG_DATA" -m fast -w stop >/dev/null
else
  "$MNEMO_PG_BIN/pg_ctl" -D "$MNEMO_PG_DATA" -m fast -w stop >/dev/null
fi
echo "mnemo: embedded PostgreSQL stopped" >&2
