#!/usr/bin/env bash
# sweeplab's MLflow tracking server in service mode, outside Docker.
#
# Runs `mlflow server` with a PostgreSQL backend store (created here if it does not
# exist yet) and proxied artifacts: clients upload and download artifacts through
# the server, so they need no access to the artifact directory themselves.
#
#   services/tracking-server.sh                  # http://127.0.0.1:5000
#   SWEEPLAB_PORT=5001 services/tracking-server.sh
#
# Clients connect with
#   MLFLOW_TRACKING_URI=http://127.0.0.1:5000 sweeplab train experiment=course_fashion_mnist
# or `sweeplab train tracking.uri=http://127.0.0.1:5000 ...`.
#
# Environment (defaults in brackets):
#   SWEEPLAB_DB_URL         backend store [postgresql://postgres@127.0.0.1:5432/sweeplab]; keep the
#                           password out of it (it shows in `ps`): use PGPASSWORD or ~/.pgpass
#   SWEEPLAB_ARTIFACTS      where the server keeps artifacts [./mlartifacts, relative to the cwd]
#   SWEEPLAB_HOST           interface to bind [127.0.0.1]
#   SWEEPLAB_PORT           port [5000]
#   SWEEPLAB_WORKERS        uvicorn worker processes [2]
#   SWEEPLAB_ALLOWED_HOSTS  mlflow --allowed-hosts (Host headers accepted). MLflow's default accepts
#                           localhost, 127.0.0.1 and private IPs only; set it when clients use a host
#                           name, e.g. SWEEPLAB_HOST=0.0.0.0 SWEEPLAB_ALLOWED_HOSTS=tracking.lan:5000
#   SWEEPLAB_DB_WAIT_S      seconds to wait for PostgreSQL to accept connections [30]
#
# The server runs in the foreground and replaces this shell (exec), so SIGTERM/SIGINT from
# systemd, supervisord or a terminal reach mlflow, which forwards them to its workers.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

db_url="${SWEEPLAB_DB_URL:-postgresql://postgres@127.0.0.1:5432/sweeplab}"
artifacts="${SWEEPLAB_ARTIFACTS:-./mlartifacts}"
host="${SWEEPLAB_HOST:-127.0.0.1}"
port="${SWEEPLAB_PORT:-5000}"
workers="${SWEEPLAB_WORKERS:-2}"
allowed_hosts="${SWEEPLAB_ALLOWED_HOSTS:-}"
db_wait_s="${SWEEPLAB_DB_WAIT_S:-30}"

if [[ -x "$root/.venv/bin/mlflow" ]]; then
  mlflow="$root/.venv/bin/mlflow"
elif mlflow="$(command -v mlflow)"; then
  :
else
  echo "tracking-server: no mlflow: neither $root/.venv/bin/mlflow nor mlflow on PATH" >&2
  exit 1
fi
# The interpreter beside mlflow has psycopg2: mlflow needs it for a PostgreSQL store anyway.
python="$(dirname "$mlflow")/python"
[[ -x "$python" ]] || python="$(command -v python3)"

# Create the backend database if it is missing (connecting to the server's `postgres`
# database with the same credentials); waits up to SWEEPLAB_DB_WAIT_S for PostgreSQL.
"$python" - "$db_url" "$db_wait_s" <<'PY'
import re
import sys
import time

import psycopg2
from psycopg2 import errors, sql

url, wait_s = re.sub(r"^postgresql\+\w+://", "postgresql://", sys.argv[1]), float(sys.argv[2])
dbname = psycopg2.extensions.parse_dsn(url).get("dbname")
if not dbname:
    sys.exit(f"tracking-server: SWEEPLAB_DB_URL names no database: {sys.argv[1]}")
deadline = time.monotonic() + wait_s
while True:
    try:  # the usual case: the database is there already
        psycopg2.connect(url, connect_timeout=5).close()
        sys.exit(0)
    except psycopg2.OperationalError:
        pass
    try:  # missing, or PostgreSQL not up yet: ask the maintenance database
        conn = psycopg2.connect(url, dbname="postgres", connect_timeout=5)
        break
    except psycopg2.OperationalError as err:
        if time.monotonic() >= deadline:
            sys.exit(f"tracking-server: cannot reach PostgreSQL for {dbname!r}: {str(err).strip()}")
        time.sleep(1)
conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
with conn.cursor() as cur:
    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
    if cur.fetchone() is None:
        try:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            print(f"tracking-server: created database {dbname}", file=sys.stderr)
        except errors.DuplicateDatabase:  # created concurrently by another starter
            pass
conn.close()
PY

# SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not installed: name psycopg2.
store_uri="$db_url"
if [[ "$store_uri" == postgresql://* ]]; then
  store_uri="postgresql+psycopg2://${store_uri#postgresql://}"
fi

mkdir -p "$artifacts"

args=(
  server
  --backend-store-uri "$store_uri"
  --serve-artifacts
  --artifacts-destination "$artifacts"
  --host "$host"
  --port "$port"
  --workers "$workers"
)
if [[ -n "$allowed_hosts" ]]; then
  args+=(--allowed-hosts "$allowed_hosts")
fi

echo "tracking-server: http://$host:$port, artifacts in $artifacts" >&2
exec "$mlflow" "${args[@]}"
