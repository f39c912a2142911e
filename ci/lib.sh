# shellcheck shell=bash
# Shared by the pipeline scripts (ci/*.sh), which Jenkins runs from the workspace root.
# Configuration comes from the environment (the Jenkinsfile's parameters and environment):
#   REGISTRY           Nexus Docker registry host[:port]            (build, push, deploy)
#   IMAGE_NAMESPACE    path under the registry (default coffer)
#   IMAGE_TAG          default: the first 12 characters of GIT_COMMIT (or of HEAD)
#   CI_TOOLS_DIR       where ci/install.sh puts pnpm (default <workspace>/.ci-tools)
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

CI_TOOLS_DIR=${CI_TOOLS_DIR:-$REPO_ROOT/.ci-tools}
PATH="$CI_TOOLS_DIR/node_modules/.bin:$PATH"
export CI_TOOLS_DIR PATH

IMAGE_NAMESPACE=${IMAGE_NAMESPACE:-coffer}
# shellcheck disable=SC2034 # used by the scripts that source this file
COMPONENTS=(api worker db)

log() { printf '\n== %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# require NAME...: each variable is set and not empty.
require() {
  local name
  for name in "$@"; do
    [ -n "${!name:-}" ] || die "$name is not set (a Jenkins parameter or environment variable)"
  done
}

# A name for this build's throwaway resources, safe in container names.
ci_id() {
  local raw=${BUILD_TAG:-local-$(id -un)}
  printf '%s' "$raw" | tr -c 'A-Za-z0-9_.-' '-' | cut -c1-60
}

image_tag() {
  local commit=${GIT_COMMIT:-}
  [ -n "$commit" ] || commit=$(git rev-parse HEAD)
  printf '%s' "${IMAGE_TAG:-${commit:0:12}}"
}

# image_repo COMPONENT -> registry/namespace/component (no tag).
image_repo() {
  require REGISTRY
  printf '%s/%s/%s' "${REGISTRY%/}" "$IMAGE_NAMESPACE" "$1"
}

random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

# wait_healthy CONTAINER SECONDS: until Docker reports its HEALTHCHECK healthy.
wait_healthy() {
  local name=$1 deadline=$((SECONDS + $2)) status
  while :; do
    status=$(docker inspect --format '{{.State.Health.Status}}' "$name" 2>/dev/null || echo missing)
    [ "$status" = healthy ] && return 0
    if ((SECONDS >= deadline)); then
      docker logs --tail 50 "$name" >&2 || true
      die "$name is $status after $2 s"
    fi
    sleep 2
  done
}
