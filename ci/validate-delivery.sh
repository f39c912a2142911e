#!/usr/bin/env bash
# Static checks of the delivery files; no Docker engine needed.
#   dockerfiles  dockerfile-utils lint of api/, worker/ and db/Dockerfile (errors fail)
#   compose      Debian's docker-compose 1.29 `config -q` on compose/compose.yaml (and with the
#                Sentinel override compose/compose.sentinel.yaml): as is,
#                with the ops profile and with .env.example (secrets from init-secrets.sh)
#   jenkinsfile  npm-groovy-lint@16.2.0 --noserver --failon error
#   shell        shellcheck over ci/*.sh, compose's scripts and the Jenkinsfile's sh steps
# Usage: ci/validate-delivery.sh [install | tools | CHECK...]; no argument: every check.
# `install` installs the tools this machine lacks, quietly: docker-compose, shellcheck and a
# Java runtime with apt-get (as root, or with sudo -n), the npm tools into $DELIVERY_TOOLS_DIR
# (default ~/.cache/coffer-delivery-tools). `tools` and the checks only look for them and name
# the command that installs what is missing: they never install anything themselves. The JSON-schema and cross-reference checks of the compose
# file, and the pipeline and image replays, are vitest tests in test/delivery/.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

GROOVY_LINT_VERSION=16.2.0
DOCKERFILE_UTILS_VERSION=0.16.3
TOOLS_DIR=${DELIVERY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/coffer-delivery-tools}
CHECKS=(dockerfiles compose jenkinsfile shell)
work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT

say() { printf '%s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    return 1
  fi
}

apt_install() {
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@")
  as_root "${apt[@]}" >"$work/apt.log" 2>&1 && return 0
  # A fresh machine may have no package lists yet.
  as_root apt-get update -qq >>"$work/apt.log" 2>&1 && as_root "${apt[@]}" >>"$work/apt.log" 2>&1 && return 0
  cat "$work/apt.log" >&2
  say "cannot install $* (needs root or sudo): install them on this machine"
  return 1
}

npm_tool_version() { node -p "require('$TOOLS_DIR/node_modules/$1/package.json').version" 2>/dev/null; }

install_tools() {
  local packages=()
  command -v docker-compose >/dev/null 2>&1 || packages+=(docker-compose)
  command -v shellcheck >/dev/null 2>&1 || packages+=(shellcheck)
  command -v java >/dev/null 2>&1 || packages+=(default-jre-headless)
  if [ "${#packages[@]}" -gt 0 ]; then
    say "installing ${packages[*]} (apt-get)"
    apt_install "${packages[@]}" || return 1
  fi
  if [ "$(npm_tool_version npm-groovy-lint)" != "$GROOVY_LINT_VERSION" ] ||
    [ "$(npm_tool_version dockerfile-utils)" != "$DOCKERFILE_UTILS_VERSION" ]; then
    say "installing npm-groovy-lint@$GROOVY_LINT_VERSION dockerfile-utils@$DOCKERFILE_UTILS_VERSION into $TOOLS_DIR"
    mkdir -p "$TOOLS_DIR"
    if ! npm install --prefix "$TOOLS_DIR" --no-audit --no-fund --loglevel=error \
      "npm-groovy-lint@$GROOVY_LINT_VERSION" "dockerfile-utils@$DOCKERFILE_UTILS_VERSION" >"$work/npm.log" 2>&1; then
      cat "$work/npm.log" >&2
      return 1
    fi
  fi
}

# Prints each missing tool; fails when one is.
missing_tools() {
  local tool missing=0
  for tool in docker-compose shellcheck java; do
    command -v "$tool" >/dev/null 2>&1 || { say "missing: $tool"; missing=1; }
  done
  [ "$(npm_tool_version npm-groovy-lint)" = "$GROOVY_LINT_VERSION" ] ||
    { say "missing: npm-groovy-lint@$GROOVY_LINT_VERSION in $TOOLS_DIR"; missing=1; }
  [ "$(npm_tool_version dockerfile-utils)" = "$DOCKERFILE_UTILS_VERSION" ] ||
    { say "missing: dockerfile-utils@$DOCKERFILE_UTILS_VERSION in $TOOLS_DIR"; missing=1; }
  return "$missing"
}

check_dockerfiles() {
  local file failed=0
  for file in api/Dockerfile worker/Dockerfile db/Dockerfile; do
    "$TOOLS_DIR/node_modules/.bin/dockerfile-utils" lint "$file" || failed=1
  done
  return "$failed"
}

check_compose() {
  local failed=0
  sh compose/init-secrets.sh "$work/secrets" >/dev/null || return 1
  local compose=(env COFFER_SECRETS_DIR="$work/secrets" docker-compose)
  "${compose[@]}" -p coffer -f compose/compose.yaml config -q || failed=1
  "${compose[@]}" -p coffer -f compose/compose.yaml --profile ops config -q || failed=1
  "${compose[@]}" --env-file .env.example -p coffer -f compose/compose.yaml --profile ops config -q || failed=1
  # The Sentinel override the README's "Scaling out" shows, merged over the stack.
  "${compose[@]}" -p coffer -f compose/compose.yaml -f compose/compose.sentinel.yaml config -q || failed=1
  return "$failed"
}

check_jenkinsfile() {
  # npm-groovy-lint prints every finding; only errors fail.
  (cd "$work" && FORCE_COLOR=0 "$TOOLS_DIR/node_modules/.bin/npm-groovy-lint" --noserver --failon error --output txt \
    "$OLDPWD/Jenkinsfile") >"$work/groovy.log" 2>&1
  local status=$?
  grep -Ev '^\s*$' "$work/groovy.log" >&2
  return "$status"
}

check_shell() {
  node ci/jenkins-sh-steps.mjs Jenkinsfile "$work/sh-steps" || return 1
  shopt -s nullglob
  local scripts=(ci/*.sh compose/*.sh compose/db-init/*.sh)
  shellcheck "${scripts[@]}" &&
    shellcheck --shell=sh "$work"/sh-steps/*.sh &&
    say "shellcheck: ${#scripts[@]} scripts and $(find "$work/sh-steps" -name '*.sh' | wc -l) Jenkinsfile sh steps clean"
}

if [ "$#" -eq 0 ]; then
  set -- "${CHECKS[@]}"
fi
if [ "$*" = install ]; then
  install_tools || { say "delivery checks: cannot install the tools"; exit 1; }
  exit 0
fi
if ! missing_tools; then
  say "delivery checks need these tools; install them with: bash ci/validate-delivery.sh install"
  exit 1
fi
[ "$*" = tools ] && exit 0

passed=0
failed=()
for check in "$@"; do
  case " ${CHECKS[*]} " in
    *" $check "*) ;;
    *)
      say "unknown check '$check' (known: install tools ${CHECKS[*]})"
      exit 2
      ;;
  esac
  say "== $check"
  started=$SECONDS
  if "check_$check"; then
    say "ok $check ($((SECONDS - started)) s)"
    passed=$((passed + 1))
  else
    say "FAILED $check ($((SECONDS - started)) s)"
    failed+=("$check")
  fi
done
say "delivery checks: $passed ok, ${#failed[@]} failed${failed[*]:+ (${failed[*]})}"
[ "${#failed[@]}" -eq 0 ]
