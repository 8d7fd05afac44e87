#!/usr/bin/env bash
# Join a Ray cluster started by services/ray-head.sh, in the foreground (exec: signals reach it).
#
#   SWEEPLAB_RAY_ADDRESS=127.0.0.1:6379 services/ray-worker.sh
#   SWEEPLAB_RAY_ADDRESS=10.0.0.5:6379 SWEEPLAB_RAY_HOST=10.0.0.6 SWEEPLAB_RAY_CPUS=8 services/ray-worker.sh
#
# Environment (defaults in brackets):
#   SWEEPLAB_RAY_ADDRESS the head, HOST:PORT (required)
#   SWEEPLAB_RAY_HOST    the address other nodes reach this one on [127.0.0.1]; "auto": this machine's
#                        first address (containers)
#   SWEEPLAB_RAY_CPUS    CPUs this node offers to trials [all cores]
#   RAY_AUTH_MODE        token [token] or disabled: the head's mode
#   RAY_AUTH_TOKEN_PATH  the cluster's token file [~/.ray/auth_token]: copy it from the head
# Extra arguments go to `ray start`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"  # services/, or the copy installed with sweeplab
cd "$here/.."
RAY=.venv/bin/ray
[ -x "$RAY" ] || RAY=ray
export RAY_USAGE_STATS_ENABLED=0
source "$here/lib/ray-auth.sh"
ray_auth_setup worker
exec "$RAY" start --block \
  --address="${SWEEPLAB_RAY_ADDRESS:?set SWEEPLAB_RAY_ADDRESS to the head, e.g. 127.0.0.1:6379}" \
  --node-ip-address="$(ray_node_ip)" \
  --num-cpus="${SWEEPLAB_RAY_CPUS:-$(nproc)}" \
  --disable-usage-stats "$@"
