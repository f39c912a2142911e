#!/usr/bin/env bash
# A private Docker engine for `pnpm test:images`: Debian's docker.io (dockerd 20.10, overlay2,
# its own managed containerd), with its own data root, exec root, pid file and socket, so it
# never meets a system dockerd. No bridge, no iptables: every container and build uses the
# host's network (`--network host`).
#   scripts/images/engine.sh start   installs docker.io if missing (apt-get), starts dockerd and
#                                    prints DOCKER_HOST=unix://... on stdout; exit 3: no engine
#                                    can start here (not root, no package, dockerd refused)
#   scripts/images/engine.sh stop    SIGTERM to its pid, waits, unmounts what it left
#   scripts/images/engine.sh status  exit 0 while it answers
# Paths: see scripts/images/lib.sh (COFFER_DOCKER_ROOT, COFFER_DOCKER_RUN).
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

cannot() {
  say "no Docker engine here: $*"
  exit 3
}

running_pid() {
  local pid
  pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] &&
    printf '%s' "$pid"
}

answers() { docker_client version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# Lazily unmounts everything still mounted under the engine's folders, deepest first.
unmount_leftovers() {
  local target count=0
  while read -r target; do
    case "$target" in
      "$DATA_ROOT"/* | "$EXEC_ROOT"/* | "$COFFER_DOCKER_RUN"/*)
        umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null || say "cannot unmount $target"
        count=$((count + 1))
        ;;
    esac
  done < <(awk '{ print $5 }' /proc/self/mountinfo | sort -r)
  [ "$count" = 0 ] || say "unmounted $count leftover mounts"
}

stop() {
  local pid containerd_pid deadline
  containerd_pid=$(cat "$EXEC_ROOT/containerd/containerd.pid" 2>/dev/null || true)
  if pid=$(running_pid); then
    say "stopping dockerd (pid $pid)"
    kill -TERM "$pid"
    deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      say "dockerd (pid $pid) still runs after 30 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  # Its managed containerd stops with it; after a SIGKILL it may not have.
  if [ -n "$containerd_pid" ] && kill -0 "$containerd_pid" 2>/dev/null &&
    [ "$(cat "/proc/$containerd_pid/comm" 2>/dev/null)" = containerd ]; then
    kill -TERM "$containerd_pid" 2>/dev/null || true
    sleep 1
  fi
  unmount_leftovers
  rm -f "$PID_FILE" "$SOCKET"
}

start() {
  [ "$(id -u)" = 0 ] || cannot "dockerd needs root (this is uid $(id -u); rootless Docker is not set up)"
  if ! command -v dockerd >/dev/null 2>&1 || ! command -v containerd >/dev/null 2>&1; then
    say "installing docker.io (apt-get)"
    apt_install docker.io || cannot "docker.io could not be installed"
  fi
  if running_pid >/dev/null; then
    say "a private dockerd from an earlier run is still up: stopping it first"
    stop
  fi
  unmount_leftovers
  mkdir -p "$DATA_ROOT" "$EXEC_ROOT"
  chmod 700 "$COFFER_DOCKER_ROOT" "$COFFER_DOCKER_RUN"
  # setsid: the engine outlives the shell that started it, and a Ctrl-C in the test's
  # terminal reaches the test, which stops the engine by its pid.
  setsid dockerd \
    --data-root "$DATA_ROOT" \
    --exec-root "$EXEC_ROOT" \
    --pidfile "$PID_FILE" \
    --host "unix://$SOCKET" \
    --storage-driver overlay2 \
    --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
    </dev/null >"$DOCKERD_LOG" 2>&1 &
  local pid=$! deadline=$((SECONDS + 60))
  until answers; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -20 "$DOCKERD_LOG" >&2
      unmount_leftovers
      cannot "dockerd exited at start-up (log: $DOCKERD_LOG)"
    fi
    if ((SECONDS >= deadline)); then
      tail -20 "$DOCKERD_LOG" >&2
      stop
      cannot "dockerd does not answer after 60 s (log: $DOCKERD_LOG)"
    fi
    sleep 0.3
  done
  say "dockerd $(docker_client version --format '{{.Server.Version}}') (pid $pid) on $SOCKET, data root $DATA_ROOT"
  printf 'DOCKER_HOST=%s\n' "$DOCKER_HOST"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) answers ;;
  *)
    say "usage: $0 start | stop | status"
    exit 2
    ;;
esac
