# Sourced by ray-head.sh and ray-worker.sh: both sides of a Ray cluster use the same token mode,
# and find their own address the same way.
#
# Ray 2.60 turns token authentication on by itself for a head when ~/.ray/auth_token exists (a
# local sweep creates that file), but not for `ray start --address`: a worker on such a machine
# then fails with InvalidAuthToken. So the mode is set explicitly, the same on every node.
#
#   RAY_AUTH_MODE        token (default) or disabled
#   RAY_AUTH_TOKEN_PATH  file holding the cluster's token [~/.ray/auth_token]; a secret mounted as
#                        a file in compose/Kubernetes. RAY_AUTH_TOKEN (the token itself) also works
#                        but lands in the environment of every process: prefer the file.
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"

# ray_auth_setup ROLE: ROLE "head" creates the token file when there is none; "worker" needs one.
ray_auth_setup() {
  local role="$1"
  [[ "$RAY_AUTH_MODE" == token ]] || return 0
  [[ -n "${RAY_AUTH_TOKEN:-}" ]] && return 0
  local path="${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}"
  if [[ ! -s "$path" ]]; then
    if [[ "$role" != head ]]; then
      echo "ray-$role: RAY_AUTH_MODE=token but no token in $path: copy the head's token file there," \
        "or set RAY_AUTH_TOKEN_PATH to it (or RAY_AUTH_MODE=disabled if the head runs without auth)" >&2
      exit 2
    fi
    # 256 random bits, the same as `ray get-auth-token --generate`, but into the configured path.
    (umask 077 && mkdir -p "$(dirname "$path")" && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$path")
    echo "ray-head: created the cluster's auth token in $path (copy it to every worker)" >&2
  fi
  export RAY_AUTH_TOKEN_PATH="$path"
}

# ray_node_ip: SWEEPLAB_RAY_HOST, where "auto" means this machine's (container's) first address,
# which is what other nodes reach it on in compose or Kubernetes networks.
ray_node_ip() {
  local host="${SWEEPLAB_RAY_HOST:-127.0.0.1}"
  if [[ "$host" == auto ]]; then
    host="$(hostname -i | awk '{print $1}')"
  fi
  echo "$host"
}
