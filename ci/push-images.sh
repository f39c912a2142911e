#!/usr/bin/env bash
# Pushes both tags of the three images to the registry. The Jenkinsfile logs in just
# before (docker login --password-stdin, into this build's own DOCKER_CONFIG).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

tag=$(image_tag)
for component in "${COMPONENTS[@]}"; do
  repo=$(image_repo "$component")
  log "push $repo:$tag"
  docker push "$repo:$tag"
  docker push "$repo:latest"
done
