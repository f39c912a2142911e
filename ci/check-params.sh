#!/usr/bin/env bash
# Fails early, naming the parameter, when the pipeline's configuration is unusable.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

require REGISTRY IMAGE_NAMESPACE
case "$REGISTRY" in
  *://* | *' '*) die "REGISTRY is a host[:port] such as nexus.example.com:8443, not a URL: '$REGISTRY'" ;;
esac
if [ "${DEPLOY:-true}" = true ]; then
  require WORKER_REPLICAS API_PORT DEPLOY_NETWORK SECRETS_DIR SOURCES_DIR
  [[ $WORKER_REPLICAS =~ ^[1-9][0-9]*$ ]] || die "WORKER_REPLICAS must be a positive integer, got '$WORKER_REPLICAS'"
  if ! [[ $API_PORT =~ ^[1-9][0-9]*$ ]] || ((API_PORT > 65535)); then
    die "API_PORT must be a port number, got '$API_PORT'"
  fi
  [[ $DEPLOY_NETWORK =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "DEPLOY_NETWORK is not a valid network name: '$DEPLOY_NETWORK'"
fi
echo "registry $REGISTRY, images $IMAGE_NAMESPACE/{${COMPONENTS[*]}}:$(image_tag)"
