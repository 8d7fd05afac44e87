#!/usr/bin/env bash
# Start the head node of a Ray cluster for sweeplab sweeps, in the foreground (exec: signals reach it).
#
#   services/ray-head.sh                                   # 127.0.0.1:6379, all cores, token auth
#   SWEEPLAB_RAY_HOST=10.0.0.5 services/ray-head.sh        # reachable by workers on other machines
#   services/ray-head.sh --temp-dir=/srv/ray               # extra arguments go to `ray start`
#
# Environment (defaults in brackets):
#   SWEEPLAB_RAY_HOST    the address other nodes reach this one on [127.0.0.1]; "auto": this machine's
#                        first address (containers). Ray 2.60 listens on every interface whatever
#                        this says: token authentication is what keeps strangers out.
#   SWEEPLAB_RAY_PORT    the head's GCS port [6379]
#   SWEEPLAB_RAY_DASHBOARD  true: Ray's dashboard and job API (for `ray job submit`) [false]
#   SWEEPLAB_RAY_DASHBOARD_HOST / _PORT  where it listens [127.0.0.1] / [8265]
#   SWEEPLAB_RAY_CPUS    CPUs this node offers to trials [all cores]
#   RAY_AUTH_MODE        token [token] or disabled; see services/lib/ray-auth.sh
#   RAY_AUTH_TOKEN_PATH  the cluster's token file [~/.ray/auth_token], created here if missing
#
# Workers join with services/ray-worker.sh; sweeps use the cluster with
#   sweeplab sweep cluster=existing cluster.address=127.0.0.1:6379 ...
# Every node needs sweeplab installed (the same .venv) and the data (SWEEPLAB_DATA_DIR or the Debian package).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"  # services/, or the copy installed with sweeplab
cd "$here/.."
RAY=.venv/bin/ray
[ -x "$RAY" ] || RAY=ray
export RAY_USAGE_STATS_ENABLED=0
source "$here/lib/ray-auth.sh"
ray_auth_setup head
dashboard=(--include-dashboard=false)
if [[ "${SWEEPLAB_RAY_DASHBOARD:-false}" == true ]]; then
  # Needs ray[default] (pip install "sweeplab[cluster]"); serves Ray's job API for `ray job submit`.
  dashboard=(--include-dashboard=true --dashboard-host="${SWEEPLAB_RAY_DASHBOARD_HOST:-127.0.0.1}"
             --dashboard-port="${SWEEPLAB_RAY_DASHBOARD_PORT:-8265}")
fi
exec "$RAY" start --head --block \
  --node-ip-address="$(ray_node_ip)" \
  --port="${SWEEPLAB_RAY_PORT:-6379}" \
  --num-cpus="${SWEEPLAB_RAY_CPUS:-$(nproc)}" \
  "${dashboard[@]}" --disable-usage-stats "$@"
