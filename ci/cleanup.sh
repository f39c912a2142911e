#!/usr/bin/env bash
# Pipeline `post`: removes this build's test sidecars and its Docker client
# configuration (the registry login). Never fails the build.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
set +e

id=$(ci_id)
mapfile -t leftovers < <(docker ps --all --quiet --filter "label=coffer.ci=$id" 2>/dev/null)
if [ "${#leftovers[@]}" -gt 0 ]; then
  docker rm --force --volumes "${leftovers[@]}" >/dev/null
fi
# Only the per-build folder the Jenkinsfile sets, never a user's ~/.docker.
case "${DOCKER_CONFIG:-}" in
  */.docker-*) rm -rf -- "$DOCKER_CONFIG" ;;
esac
exit 0
