#!/usr/bin/env bash
# Builds the api, worker and db images from the repository root, each tagged with the
# short commit and `latest` under $REGISTRY/$IMAGE_NAMESPACE.
# Optional:
#   NODE_IMAGE, MYSQL_IMAGE  base images, e.g. through a Nexus proxy where Docker Hub is out
#                            of reach (the Dockerfiles pull nothing else)
#   DOCKER_BUILD_FLAGS       extra `docker build` flags for this agent, split on whitespace,
#                            e.g. "--network host" or "--build-arg HTTPS_PROXY=http://proxy:3128"
#   IMAGE_COMPONENTS         a subset to build, e.g. "api worker" (default: api worker db)
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

tag=$(image_tag)
revision=${GIT_COMMIT:-$(git rev-parse HEAD)}
build_args=()
[ -z "${NODE_IMAGE:-}" ] || build_args+=(--build-arg "NODE_IMAGE=$NODE_IMAGE")
[ -z "${MYSQL_IMAGE:-}" ] || build_args+=(--build-arg "MYSQL_IMAGE=$MYSQL_IMAGE")
extra_flags=()
[ -z "${DOCKER_BUILD_FLAGS:-}" ] || read -r -a extra_flags <<<"$DOCKER_BUILD_FLAGS"
components=("${COMPONENTS[@]}")
[ -z "${IMAGE_COMPONENTS:-}" ] || read -r -a components <<<"$IMAGE_COMPONENTS"

for component in "${components[@]}"; do
  case " ${COMPONENTS[*]} " in
    *" $component "*) ;;
    *) die "IMAGE_COMPONENTS: unknown component $component (known: ${COMPONENTS[*]})" ;;
  esac
done

for component in "${components[@]}"; do
  repo=$(image_repo "$component")
  log "build $repo:$tag"
  docker build \
    --file "$component/Dockerfile" \
    --tag "$repo:$tag" \
    --tag "$repo:latest" \
    --label "org.opencontainers.image.revision=$revision" \
    --label "org.opencontainers.image.title=coffer-$component" \
    "${build_args[@]}" \
    "${extra_flags[@]}" \
    .
done
