#!/usr/bin/env bash
# Builds the api, worker and db images from the repository root, each tagged with the
# short commit and `latest` under $REGISTRY/$IMAGE_NAMESPACE.
# Optional: NODE_IMAGE, MYSQL_IMAGE (base images, e.g. through a Nexus proxy).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

tag=$(image_tag)
revision=${GIT_COMMIT:-$(git rev-parse HEAD)}
build_args=()
[ -z "${NODE_IMAGE:-}" ] || build_args+=(--build-arg "NODE_IMAGE=$NODE_IMAGE")
[ -z "${MYSQL_IMAGE:-}" ] || build_args+=(--build-arg "MYSQL_IMAGE=$MYSQL_IMAGE")

for component in "${COMPONENTS[@]}"; do
  repo=$(image_repo "$component")
  log "build $repo:$tag"
  docker build \
    --file "$component/Dockerfile" \
    --tag "$repo:$tag" \
    --tag "$repo:latest" \
    --label "org.opencontainers.image.revision=$revision" \
    --label "org.opencontainers.image.title=coffer-$component" \
    "${build_args[@]}" \
    .
done
