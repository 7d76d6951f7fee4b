#!/usr/bin/env bash
# Stop the PgBouncer that scripts/start-pgbouncer.sh started (the pgbouncer tox
# env runs this when it ends). One that was already running before leaves no
# mark in the directory, and is left alone.
set -euo pipefail
dir=${PGBOUNCER_DIR:-/tmp/workflow_db-pgbouncer}
[ -f "$dir/started-here" ] || exit 0
rm -f "$dir/started-here"
pid=$(cat "$dir/pgbouncer.pid" 2>/dev/null || true)
[ -n "$pid" ] || exit 0
kill "$pid" 2>/dev/null || exit 0
for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || exit 0
    sleep 0.1
done
kill -9 "$pid" 2>/dev/null || true
