#!/usr/bin/env bash
# Start the head node of a Ray cluster for sweeplab sweeps, in the foreground (exec: signals reach it).
#
#   services/ray-head.sh                                   # 127.0.0.1:6379, all cores, token auth
#   SWEEPLAB_RAY_HOST=10.0.0.5 services/ray-head.sh        # reachable by workers on other machines
#   services/ray-head.sh --temp-dir=/srv/ray               # extra arguments go to `ray start`
#
# Environment (defaults in brackets):
#   SWEEPLAB_RAY_HOST    address this node binds and others reach it on [127.0.0.1]
#   SWEEPLAB_RAY_PORT    the head's GCS port [6379]
#   SWEEPLAB_RAY_CPUS    CPUs this node offers to trials [all cores]
#   RAY_AUTH_MODE        token [token] or disabled; see services/lib/ray-auth.sh
#   RAY_AUTH_TOKEN_PATH  the cluster's token file [~/.ray/auth_token], created here if missing
#
# Workers join with services/ray-worker.sh; sweeps use the cluster with
#   sweeplab sweep cluster=existing cluster.address=127.0.0.1:6379 ...
# Every node needs sweeplab installed (the same .venv) and the data (SWEEPLAB_DATA_DIR or the Debian package).
set -euo pipefail
cd "$(dirname "$0")/.."
RAY=.venv/bin/ray
[ -x "$RAY" ] || RAY=ray
export RAY_USAGE_STATS_ENABLED=0
source services/lib/ray-auth.sh
ray_auth_setup head
exec "$RAY" start --head --block \
  --node-ip-address="${SWEEPLAB_RAY_HOST:-127.0.0.1}" \
  --port="${SWEEPLAB_RAY_PORT:-6379}" \
  --num-cpus="${SWEEPLAB_RAY_CPUS:-$(nproc)}" \
  --include-dashboard=false --disable-usage-stats "$@"
