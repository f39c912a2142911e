#!/usr/bin/env bash
# Lint, typecheck and the whole test suite, against throwaway Redis and MySQL containers
# (published on loopback ports Docker chooses), removed when the script ends.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

REDIS_SIDECAR_IMAGE=${REDIS_SIDECAR_IMAGE:-redis:7.4-alpine}
MYSQL_SIDECAR_IMAGE=${MYSQL_SIDECAR_IMAGE:-mysql:8.4}
id=$(ci_id)
redis="coffer-ci-$id-redis"
mysql="coffer-ci-$id-mysql"

remove_sidecars() { docker rm --force --volumes "$redis" "$mysql" >/dev/null 2>&1 || true; }
trap remove_sidecars EXIT
remove_sidecars

# A fresh root password per run, passed by name so it never shows on a command line.
MYSQL_ROOT_PASSWORD=$(random_hex 16)
export MYSQL_ROOT_PASSWORD

log "sidecars"
docker run --detach --name "$redis" --label "coffer.ci=$id" --publish 127.0.0.1::6379 \
  --health-cmd 'redis-cli ping | grep -q PONG' --health-interval 2s \
  "$REDIS_SIDECAR_IMAGE" redis-server --save '' --appendonly no
docker run --detach --name "$mysql" --label "coffer.ci=$id" --publish 127.0.0.1::3306 \
  --env MYSQL_ROOT_PASSWORD \
  --health-cmd 'mysqladmin ping -h 127.0.0.1 --silent' --health-interval 2s \
  "$MYSQL_SIDECAR_IMAGE"
wait_healthy "$redis" 60
wait_healthy "$mysql" 180

# docker port prints 127.0.0.1:49153; keep the port.
redis_port=$(docker port "$redis" 6379/tcp | head -n 1)
mysql_port=$(docker port "$mysql" 3306/tcp | head -n 1)
export REDIS_URL="redis://127.0.0.1:${redis_port##*:}"
export MYSQL_HOST=127.0.0.1 MYSQL_PORT="${mysql_port##*:}" MYSQL_USER=root MYSQL_PASSWORD="$MYSQL_ROOT_PASSWORD"

log "lint"
pnpm lint
log "typecheck"
pnpm typecheck
log "test"
mkdir -p reports
pnpm test --reporter=default --reporter=junit --outputFile.junit=reports/junit.xml
