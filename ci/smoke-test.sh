#!/usr/bin/env bash
# After the deploy: asks the API to back up a small probe folder and polls the job until it
# is completed. The probe is written under SOURCES_DIR (the Docker host's folder the workers
# see as /data/sources) and removed afterwards; its snapshot lands under `coffer-smoke/`.
#   SMOKE_API_URL  default http://127.0.0.1:$API_PORT
#   SMOKE_TIMEOUT  seconds to wait for readiness and for the job (default 120)
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

require SOURCES_DIR
api=${SMOKE_API_URL:-http://127.0.0.1:${API_PORT:?API_PORT is not set}}
timeout=${SMOKE_TIMEOUT:-120}
probe_name=".coffer-smoke/$(ci_id)"
probe="$SOURCES_DIR/$probe_name"

work=$(mktemp -d)
cleanup() { rm -rf -- "$probe" "$work"; }
trap cleanup EXIT

# json_get PATH: prints a field (a.b.c) of the JSON document on stdin.
json_get() {
  node -e '
    let text = "";
    process.stdin.on("data", (chunk) => (text += chunk)).on("end", () => {
      let value = JSON.parse(text);
      for (const key of process.argv[1].split(".")) value = value == null ? undefined : value[key];
      process.stdout.write(value == null ? "" : String(value));
    });' "$1"
}

# Every route but /health and /ready needs a token: send the admin token, from a file
# so that it never appears on a command line.
curl_options=(--silent --show-error --max-time 10)
[ -r "${SECRETS_DIR:-}/api_admin_token" ] || die "cannot read the admin token at \$SECRETS_DIR/api_admin_token"
(umask 077 && printf 'Authorization: Bearer %s\n' "$(cat "$SECRETS_DIR/api_admin_token")" >"$work/headers")
curl_options+=(--header "@$work/headers")

mkdir -p "$probe/sub"
printf 'coffer smoke test %s\n' "$(ci_id)" >"$probe/hello.txt"
printf 'nested\n' >"$probe/sub/nested.txt"
# The workers run as another user.
chmod -R a+rX "$SOURCES_DIR/.coffer-smoke"

log "waiting for $api/ready"
deadline=$((SECONDS + timeout))
until curl "${curl_options[@]}" --fail --output /dev/null "$api/ready"; do
  ((SECONDS < deadline)) || die "the API at $api is not ready after $timeout s"
  sleep 2
done

log "POST /backup /data/sources/$probe_name"
curl "${curl_options[@]}" --fail --output "$work/created.json" \
  --header 'content-type: application/json' \
  --data "{\"source\": \"/data/sources/$probe_name\", \"destination\": \"coffer-smoke\"}" \
  "$api/backup"
job=$(json_get id <"$work/created.json")
[ -n "$job" ] || die "no job id in $(cat "$work/created.json")"

deadline=$((SECONDS + timeout))
while :; do
  curl "${curl_options[@]}" --fail --output "$work/job.json" "$api/jobs/$job"
  status=$(json_get status <"$work/job.json")
  case "$status" in
    completed) break ;;
    failed | cancelled) die "job $job ended $status: $(cat "$work/job.json")" ;;
  esac
  ((SECONDS < deadline)) || die "job $job is still $status after $timeout s"
  sleep 1
done
files=$(json_get result.files <"$work/job.json")
[ "$files" = 2 ] || die "job $job completed with $files files instead of 2: $(cat "$work/job.json")"
echo "smoke test passed: job $job completed, snapshot $(json_get result.path <"$work/job.json")"
