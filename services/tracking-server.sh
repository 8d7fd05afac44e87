#!/usr/bin/env bash
# sweeplab's MLflow tracking server in service mode, outside Docker.
#
# Runs `mlflow server` with a PostgreSQL backend store (created here if it does not
# exist yet) and proxied artifacts: clients upload and download artifacts through
# the server, so they need no access to the artifact directory themselves.
#
#   services/tracking-server.sh                  # http://127.0.0.1:5000, no authentication
#   SWEEPLAB_AUTH=basic MLFLOW_AUTH_ADMIN_PASSWORD_FILE=/etc/sweeplab/admin-password \
#     services/tracking-server.sh                # MLflow's basic-auth app
#
# Clients connect with
#   MLFLOW_TRACKING_URI=http://127.0.0.1:5000 sweeplab train experiment=course_fashion_mnist
# (and MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD when authentication is on).
#
# Environment (defaults in brackets):
#   SWEEPLAB_DB_URL         backend store [postgresql://postgres@127.0.0.1:5432/sweeplab]. A password in
#                           it is moved to PGPASSWORD before mlflow starts, so it never shows in `ps`.
#   SWEEPLAB_ARTIFACTS      where the server keeps artifacts: a directory [./mlartifacts, relative to
#                           the cwd] or an object store (s3://bucket/prefix, with MLFLOW_S3_ENDPOINT_URL
#                           and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for MinIO and the like)
#   SWEEPLAB_HOST           interface to bind [127.0.0.1]
#   SWEEPLAB_PORT           port [5000]
#   SWEEPLAB_WORKERS        uvicorn worker processes [2]
#   SWEEPLAB_ALLOWED_HOSTS  mlflow --allowed-hosts (Host headers accepted). MLflow's default accepts
#                           localhost, 127.0.0.1 and private IPs only; set it when clients use a host
#                           name, e.g. SWEEPLAB_HOST=0.0.0.0 SWEEPLAB_ALLOWED_HOSTS=tracking.lan:5000
#   SWEEPLAB_DB_WAIT_S      seconds to wait for PostgreSQL to accept connections [30]
#   SWEEPLAB_STATE_DIR      where generated files live (secret key, auth config)
#                           [${XDG_STATE_HOME:-~/.local/state}/sweeplab]
# Authentication (MLflow's basic-auth app):
#   SWEEPLAB_AUTH           basic | none [basic when SWEEPLAB_HOST is not a loopback address, else none]
#   MLFLOW_AUTH_ADMIN_USERNAME  the admin user [admin]
#   MLFLOW_AUTH_ADMIN_PASSWORD  its password: creates the admin at the first start, and replaces the
#                           insecure default password that older MLflow versions shipped
#   SWEEPLAB_AUTH_DB_URL    the users/permissions database [the backend store's database + "_auth"]
#   SWEEPLAB_AUTH_DEFAULT_PERMISSION  what users may do with others' experiments [READ]
#   SWEEPLAB_AUTH_CACHE_S   seconds a checked password is trusted per worker [30]: without it every
#                           request pays a PBKDF2 hash; a changed password takes this long to apply
#   MLFLOW_FLASK_SERVER_SECRET_KEY  Flask's secret key (CSRF); made once and kept in the state dir
#                           when not given
#   MLFLOW_AUTH_CONFIG_PATH your own basic_auth.ini instead of the generated one
# Every secret can come from a file instead: VAR_FILE=/path sets VAR from the file's content
# (MLFLOW_AUTH_ADMIN_PASSWORD_FILE, MLFLOW_FLASK_SERVER_SECRET_KEY_FILE, PGPASSWORD_FILE,
# AWS_SECRET_ACCESS_KEY_FILE), the convention of Docker and Kubernetes secrets.
#
# The server runs in the foreground and replaces this shell (exec), so SIGTERM/SIGINT from
# systemd, supervisord or a terminal reach mlflow, which forwards them to its workers.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# VAR_FILE -> VAR, unless VAR is set already. Never echoes the value.
load_secret() {
  local var="$1" file_var="$1_FILE"
  if [[ -z "${!var:-}" && -n "${!file_var:-}" ]]; then
    [[ -r "${!file_var}" ]] || { echo "tracking-server: $file_var: cannot read ${!file_var}" >&2; exit 2; }
    local value
    value="$(<"${!file_var}")"
    export "$var=$value"
  fi
  unset "$file_var"
}
for secret in PGPASSWORD MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY AWS_SECRET_ACCESS_KEY; do
  load_secret "$secret"
done

# MLflow 3's server-side job runner (GenAI judges, prompt optimization) starts seven helper
# processes; sweeplab uses none of it.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"

db_url="${SWEEPLAB_DB_URL:-postgresql://postgres@127.0.0.1:5432/sweeplab}"
artifacts="${SWEEPLAB_ARTIFACTS:-./mlartifacts}"
host="${SWEEPLAB_HOST:-127.0.0.1}"
port="${SWEEPLAB_PORT:-5000}"
workers="${SWEEPLAB_WORKERS:-2}"
allowed_hosts="${SWEEPLAB_ALLOWED_HOSTS:-}"
state_dir="${SWEEPLAB_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/sweeplab}"
case "$host" in
  127.*|localhost|::1) auth="${SWEEPLAB_AUTH:-none}" ;;
  *) auth="${SWEEPLAB_AUTH:-basic}" ;;
esac
case "$auth" in
  basic|none) ;;
  *) echo "tracking-server: SWEEPLAB_AUTH=$auth: use basic or none" >&2; exit 2 ;;
esac

if [[ -x "$root/.venv/bin/mlflow" ]]; then
  mlflow="$root/.venv/bin/mlflow"
elif mlflow="$(command -v mlflow)"; then
  :
else
  echo "tracking-server: no mlflow: neither $root/.venv/bin/mlflow nor mlflow on PATH" >&2
  exit 1
fi
python="$(dirname "$mlflow")/python"
[[ -x "$python" ]] || python="$(command -v python3)"

# Prepare the databases (waiting up to SWEEPLAB_DB_WAIT_S for PostgreSQL, creating what is
# missing) and take any password out of the URLs. URLs travel through the environment, not
# argv, and come back one per line: store URL, auth URL (empty without auth), password.
prepared="$(SWEEPLAB_DB_URL="$db_url" SWEEPLAB_AUTH="$auth" "$python" - <<'PY'
import os
import sys
import time
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from psycopg import errors, sql

def fail(message):
    sys.exit(f"tracking-server: {message}")

def split_password(url):
    """The URL without its password, and the password (unquoted) or None."""
    parts = urlsplit(url)
    if parts.password is None:
        return url, None
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[2]}")), unquote(parts.password)

def ensure_database(url, wait_s, password):
    """Connect to the database, creating it (through the maintenance database) if it is missing."""
    libpq = "postgresql://" + url.split("://", 1)[1]  # psycopg takes no SQLAlchemy +driver suffix
    dbname = urlsplit(libpq).path.lstrip("/")
    if not dbname:
        fail(f"{urlsplit(url)._replace(netloc='…').geturl()} names no database")
    kwargs = {"connect_timeout": 5, **({"password": password} if password else {})}
    deadline = time.monotonic() + wait_s
    while True:
        try:  # the usual case: the database is there already
            psycopg.connect(libpq, **kwargs).close()
            return
        except psycopg.OperationalError:
            pass
        try:  # missing, or PostgreSQL not up yet: ask the maintenance database
            conn = psycopg.connect(libpq, dbname="postgres", autocommit=True, **kwargs)
            break
        except psycopg.OperationalError as err:
            if time.monotonic() >= deadline:
                reason = str(err).strip().splitlines()[0]
                fail(f"cannot reach PostgreSQL for database {dbname!r}: {reason}")
            time.sleep(1)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
        if cur.fetchone() is None:
            try:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
                print(f"tracking-server: created database {dbname}", file=sys.stderr)
            except errors.DuplicateDatabase:  # created concurrently by another starter
                pass

wait_s = float(os.environ.get("SWEEPLAB_DB_WAIT_S", "30"))
store, password = split_password(os.environ["SWEEPLAB_DB_URL"])
password = password or os.environ.get("PGPASSWORD")
ensure_database(store, wait_s, password)
auth = ""
if os.environ["SWEEPLAB_AUTH"] == "basic" and not os.environ.get("MLFLOW_AUTH_CONFIG_PATH"):
    auth = os.environ.get("SWEEPLAB_AUTH_DB_URL") or urlsplit(store)._replace(
        path=urlsplit(store).path + "_auth"
    ).geturl()
    auth, auth_password = split_password(auth)
    if auth_password and auth_password != password:
        fail("SWEEPLAB_AUTH_DB_URL has a password of its own: use one PostgreSQL user for both databases")
    ensure_database(auth, wait_s, password)
print(store, auth, password or "", "end", sep="\n")  # "end": $(...) drops trailing empty lines
PY
)"
{ read -r store_uri; read -r auth_db_uri; read -r db_password; } <<<"$prepared"
if [[ -n "$db_password" ]]; then
  export PGPASSWORD="$db_password"  # libpq (psycopg) reads it; the URI mlflow gets has none
fi
unset db_password prepared

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

if [[ "$auth" == basic ]]; then
  mkdir -p "$state_dir"
  chmod 700 "$state_dir"
  if [[ -z "${MLFLOW_FLASK_SERVER_SECRET_KEY:-}" ]]; then
    # Static across restarts and workers (MLflow's CSRF tokens need that), kept beside the other state.
    key_file="$state_dir/tracking-secret-key"
    [[ -s "$key_file" ]] || (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$key_file")
    MLFLOW_FLASK_SERVER_SECRET_KEY="$(<"$key_file")"
    export MLFLOW_FLASK_SERVER_SECRET_KEY
  fi
  export MLFLOW_AUTH_ADMIN_USERNAME="${MLFLOW_AUTH_ADMIN_USERNAME:-admin}"
  if [[ -z "${MLFLOW_AUTH_CONFIG_PATH:-}" ]]; then
    # The database URI carries no password (PGPASSWORD does), so the file holds no secret.
    export MLFLOW_AUTH_CONFIG_PATH="$state_dir/tracking-auth-$port.ini"
    (umask 077 && cat > "$MLFLOW_AUTH_CONFIG_PATH" <<INI
[mlflow]
default_permission = ${SWEEPLAB_AUTH_DEFAULT_PERMISSION:-READ}
database_uri = $auth_db_uri
admin_username = $MLFLOW_AUTH_ADMIN_USERNAME
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = ${SWEEPLAB_AUTH_CACHE_S:-30}
INI
    )
  fi
  args+=(--app-name basic-auth)
fi

if [[ "$artifacts" != *://* ]]; then
  mkdir -p "$artifacts"
fi

echo "tracking-server: http://$host:$port (auth: $auth), artifacts in $artifacts" >&2
exec "$mlflow" "${args[@]}"
