#!/bin/sh
# Creates the compose stack's secret files, one random value each, where they are missing
# (an existing file is kept). Usage, from the repository root:
#   sh compose/init-secrets.sh [DIR]
# DIR defaults to $COFFER_SECRETS_DIR, else compose/secrets (ignored by git). If you
# choose another folder, give compose the same absolute path in COFFER_SECRETS_DIR.
set -eu

dir=${1:-${COFFER_SECRETS_DIR:-$(dirname "$0")/secrets}}
names='mysql_password mysql_root_password api_admin_token grafana_db_password grafana_admin_password'

mkdir -p "$dir"
# Only you may list the folder; the files themselves must be readable by the
# containers' own users (mysql, node, grafana), to which compose bind-mounts them.
chmod 0700 "$dir"
for name in $names; do
  file="$dir/$name"
  if [ -s "$file" ]; then
    echo "kept    $file"
    continue
  fi
  # 48 hex digits: no character that needs quoting in SQL, URLs or shells.
  od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$file"
  chmod 0644 "$file"
  echo "created $file"
done
