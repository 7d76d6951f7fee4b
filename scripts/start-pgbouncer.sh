#!/usr/bin/env bash
# Start PgBouncer on 127.0.0.1:6432 in TRANSACTION pooling mode in front of the
# PostgreSQL server on 127.0.0.1:5432 (trust auth), for the `pgbouncer` tox env.
# Installs the Debian package if it is missing; does nothing if 6432 already answers.
# scripts/stop-pgbouncer.sh stops it again (only one this script started).
set -euo pipefail
port=${PGBOUNCER_PORT:-6432}
dir=${PGBOUNCER_DIR:-/tmp/workflow_db-pgbouncer}

if pg_isready -q -h 127.0.0.1 -p "$port"; then
    echo "pgbouncer already answers on 127.0.0.1:$port"
    exit 0
fi
if ! command -v pgbouncer >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q pgbouncer >/dev/null
fi

mkdir -p "$dir"
user=${PGUSER:-$(id -un)}
cat > "$dir/userlist.txt" <<USERS
"$user" ""
"postgres" ""
USERS
cat > "$dir/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=5432

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 1000
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI

if [ "$(id -u)" = 0 ]; then  # pgbouncer refuses to run as root
    chown -R postgres "$dir"
    runuser -u postgres -- pgbouncer -d "$dir/pgbouncer.ini"
else
    pgbouncer -d "$dir/pgbouncer.ini"
fi
touch "$dir/started-here"
for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p "$port" && exit 0
    sleep 0.2
done
echo "pgbouncer did not start; see $dir/pgbouncer.log" >&2
exit 1
