# shellcheck shell=bash disable=SC2034 # the variables are for the scripts that source this file
# Shared by scripts/images/*.sh: where the private Docker engine of `pnpm test:images` lives.
#   COFFER_DOCKER_ROOT  its data (images, build cache, the stand-in base image's work files);
#                       default /var/lib/coffer-docker-ci, outside the checkout so that a clean
#                       clone on the same machine finds the cache again
#   COFFER_DOCKER_RUN   its sockets, pid file and exec root (default /run/coffer-docker-ci)
set -euo pipefail

COFFER_DOCKER_ROOT=${COFFER_DOCKER_ROOT:-/var/lib/coffer-docker-ci}
COFFER_DOCKER_RUN=${COFFER_DOCKER_RUN:-/run/coffer-docker-ci}
DATA_ROOT=$COFFER_DOCKER_ROOT/data
EXEC_ROOT=$COFFER_DOCKER_RUN/exec
PID_FILE=$COFFER_DOCKER_RUN/dockerd.pid
SOCKET=$COFFER_DOCKER_RUN/docker.sock
DOCKERD_LOG=$COFFER_DOCKER_ROOT/dockerd.log
# Debian's engine is 20.10 (API 1.41); a newer client on the PATH talks to it at that version.
export DOCKER_HOST=unix://$SOCKET DOCKER_API_VERSION=1.41 DOCKER_BUILDKIT=0

say() { printf '%s\n' "$*" >&2; }

# The Debian client matches the engine; any other docker client works through DOCKER_API_VERSION.
docker_client() {
  if [ -x /usr/bin/docker ]; then
    /usr/bin/docker "$@"
  else
    docker "$@"
  fi
}

# apt_install PACKAGE...: as root, quietly; refreshes the package lists once if needed.
# No service starts: an engine installed here must not come up as the system's dockerd.
apt_install() {
  local log policy=/usr/sbin/policy-rc.d added_policy=0 status=0
  log=$(mktemp)
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added_policy=1
  fi
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@")
  if ! "${apt[@]}" >"$log" 2>&1; then
    { apt-get update -qq >>"$log" 2>&1 && "${apt[@]}" >>"$log" 2>&1; } || status=$?
  fi
  [ "$added_policy" = 0 ] || rm -f "$policy"
  [ "$status" = 0 ] || tail -20 "$log" >&2
  rm -f "$log"
  return "$status"
}
