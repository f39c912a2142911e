#!/usr/bin/env bash
# Runs or updates Coffer on the agent's Docker engine: one network, Redis, the db, the API
# and WORKER_REPLICAS workers, with the images of this build's tag pulled from the registry
# (so what runs is exactly what Nexus serves). A container is replaced only when its image
# or its settings changed (label coffer.spec), workers one at a time and gracefully.
#   DEPLOY_NETWORK   Docker network (created if missing)
#   DEPLOY_NAME      prefix of the containers and volumes (default coffer)
#   WORKER_REPLICAS  number of worker containers
#   API_PORT         host port published for the API
#   SECRETS_DIR      folder on the Docker host holding the files mysql_root_password,
#                    mysql_password and api_admin_token (compose/init-secrets.sh makes them)
#   SOURCES_DIR      folder on the Docker host mounted read-only into the workers at
#                    /data/sources, their SOURCE_ROOTS
#   REDIS_IMAGE      default redis:7.4-alpine
#   QUEUE_PREFIX, MYSQL_DATABASE, MYSQL_USER  default coffer
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

require REGISTRY DEPLOY_NETWORK WORKER_REPLICAS API_PORT SECRETS_DIR SOURCES_DIR
name=${DEPLOY_NAME:-coffer}
tag=$(image_tag)
redis_image=${REDIS_IMAGE:-redis:7.4-alpine}
db_image="$(image_repo db):$tag"
api_image="$(image_repo api):$tag"
worker_image="$(image_repo worker):$tag"
database=${MYSQL_DATABASE:-coffer}
database_user=${MYSQL_USER:-coffer}

for secret in mysql_root_password mysql_password api_admin_token; do
  [ -s "$SECRETS_DIR/$secret" ] || die "missing secret file $SECRETS_DIR/$secret (sh compose/init-secrets.sh $SECRETS_DIR)"
done
[ -d "$SOURCES_DIR" ] || die "SOURCES_DIR $SOURCES_DIR is not a folder"

# ensure CONTAINER STOP_SECONDS IMAGE [docker run options...] [-- command...]
# Starts the container, or replaces it when its spec (image id, options, command) changed.
ensure() {
  local container=$1 stop_seconds=$2 image=$3
  shift 3
  local options=() command=() image_id spec current
  while (($#)); do
    if [ "$1" = -- ]; then
      shift
      command=("$@")
      break
    fi
    options+=("$1")
    shift
  done
  image_id=$(docker image inspect --format '{{.Id}}' "$image")
  spec=$(printf '%s\n' "$image_id" "$DEPLOY_NETWORK" "${options[@]}" "${command[@]}" | sha256sum | cut -c1-16)
  current=$(docker container inspect --format '{{index .Config.Labels "coffer.spec"}} {{.State.Running}}' "$container" 2>/dev/null || true)
  if [ "$current" = "$spec true" ]; then
    echo "$container: up to date"
    return 0
  fi
  if [ -n "$current" ]; then
    docker stop --time "$stop_seconds" "$container" >/dev/null
    docker rm "$container" >/dev/null
  fi
  docker run --detach --name "$container" --network "$DEPLOY_NETWORK" --restart unless-stopped \
    --stop-timeout "$stop_seconds" --label "coffer.deployment=$name" --label "coffer.spec=$spec" \
    "${options[@]}" "$image" "${command[@]}" >/dev/null
  echo "$container: started $image"
}

log "network $DEPLOY_NETWORK"
if ! docker network inspect "$DEPLOY_NETWORK" >/dev/null 2>&1; then
  docker network create "$DEPLOY_NETWORK"
fi
for volume in mysql-data redis-data backups; do
  docker volume create "$name-$volume" >/dev/null
done

log "pull $tag"
for image in "$redis_image" "$db_image" "$api_image" "$worker_image"; do
  docker pull --quiet "$image"
done

log "redis and db"
ensure "$name-redis" 10 "$redis_image" \
  --network-alias redis --volume "$name-redis-data:/data" \
  --health-cmd 'redis-cli ping | grep -q PONG' --health-interval 5s \
  -- redis-server --appendonly yes --appendfsync always --maxmemory-policy noeviction
ensure "$name-db" 60 "$db_image" \
  --network-alias db --volume "$name-mysql-data:/var/lib/mysql" \
  --env "MYSQL_DATABASE=$database" --env "MYSQL_USER=$database_user" \
  --env MYSQL_PASSWORD_FILE=/run/secrets/mysql_password \
  --env MYSQL_ROOT_PASSWORD_FILE=/run/secrets/mysql_root_password \
  --volume "$SECRETS_DIR/mysql_password:/run/secrets/mysql_password:ro" \
  --volume "$SECRETS_DIR/mysql_root_password:/run/secrets/mysql_root_password:ro"
wait_healthy "$name-redis" 60
wait_healthy "$name-db" 300

coffer=(
  --init
  --env REDIS_URL=redis://redis:6379
  --env "QUEUE_PREFIX=${QUEUE_PREFIX:-coffer}"
  --env MYSQL_HOST=db --env MYSQL_PORT=3306
  --env "MYSQL_DATABASE=$database" --env "MYSQL_USER=$database_user"
  --env MYSQL_PASSWORD_FILE=/run/secrets/mysql_password
  --volume "$SECRETS_DIR/mysql_password:/run/secrets/mysql_password:ro"
  --env SOURCE_ROOTS=/data/sources --env BACKUP_ROOT=/data/backups
)

log "api"
ensure "$name-api" 15 "$api_image" "${coffer[@]}" \
  --network-alias api --publish "$API_PORT:3000" --env "INSTANCE_NAME=$name-api" \
  --env API_ADMIN_TOKEN_FILE=/run/secrets/api_admin_token \
  --volume "$SECRETS_DIR/api_admin_token:/run/secrets/api_admin_token:ro"
wait_healthy "$name-api" 120

log "$WORKER_REPLICAS workers"
for ((i = 1; i <= WORKER_REPLICAS; i++)); do
  # Running jobs get 30 s to finish on SIGTERM; give the stop a little more.
  ensure "$name-worker-$i" 40 "$worker_image" "${coffer[@]}" \
    --label coffer.role=worker --env "INSTANCE_NAME=$name-worker-$i" \
    --volume "$SOURCES_DIR:/data/sources:ro" --volume "$name-backups:/data/backups"
done
# Scaled down: stop the workers numbered above WORKER_REPLICAS.
while read -r container; do
  index=${container##*-worker-}
  if [[ $index =~ ^[0-9]+$ ]] && ((index > WORKER_REPLICAS)); then
    docker stop --time 40 "$container" >/dev/null
    docker rm "$container" >/dev/null
    echo "$container: removed"
  fi
done < <(docker ps --all --filter "label=coffer.deployment=$name" --filter label=coffer.role=worker --format '{{.Names}}')
for ((i = 1; i <= WORKER_REPLICAS; i++)); do
  wait_healthy "$name-worker-$i" 120
done
echo "deployed $tag: api on port $API_PORT, $WORKER_REPLICAS workers, network $DEPLOY_NETWORK"
