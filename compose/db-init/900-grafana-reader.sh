# shellcheck shell=bash
# Run by the MySQL image's entrypoint from /docker-entrypoint-initdb.d on the first start
# (empty data volume), after the migrations (name order): creates the read-only user that
# Grafana's data source logs in with. It may read the log table and nothing else.
#   GRAFANA_DB_USER           the user name (default coffer_grafana)
#   GRAFANA_DB_PASSWORD_FILE  a file holding its password (a compose secret)
#   MYSQL_DATABASE            the database holding `log` (default coffer)

coffer_grafana_reader() {
  local user=${GRAFANA_DB_USER:-coffer_grafana}
  local database=${MYSQL_DATABASE:-coffer}
  local file=${GRAFANA_DB_PASSWORD_FILE:-}
  local password sql

  if [ -z "$file" ] || [ ! -r "$file" ]; then
    echo "900-grafana-reader: GRAFANA_DB_PASSWORD_FILE is not a readable file; no Grafana user created"
    return 0
  fi
  case "$user" in
    '' | *[!A-Za-z0-9_]*) echo "900-grafana-reader: invalid GRAFANA_DB_USER '$user'" >&2; return 1 ;;
  esac
  case "$database" in
    '' | *[!A-Za-z0-9_]*) echo "900-grafana-reader: invalid MYSQL_DATABASE '$database'" >&2; return 1 ;;
  esac

  password=$(cat "$file")
  # A string literal: double the backslashes and the single quotes.
  password=${password//\\/\\\\}
  password=${password//\'/\'\'}
  sql="CREATE USER IF NOT EXISTS '$user'@'%' IDENTIFIED BY '$password';
GRANT SELECT ON \`$database\`.\`log\` TO '$user'@'%';"

  if declare -F docker_process_sql >/dev/null; then
    # Sourced by the entrypoint (the file is not executable): its helper knows the socket
    # and the root password.
    docker_process_sql <<<"$sql"
  else
    # Run by hand in the container (`bash /docker-entrypoint-initdb.d/900-grafana-reader.sh`)
    # on a database initialised before this script existed.
    local root_password=${MYSQL_ROOT_PASSWORD:-}
    if [ -z "$root_password" ] && [ -r "${MYSQL_ROOT_PASSWORD_FILE:-}" ]; then
      root_password=$(cat "$MYSQL_ROOT_PASSWORD_FILE")
    fi
    mysql --defaults-extra-file=<(printf '[client]\npassword="%s"\n' "$root_password") --protocol=socket -uroot <<<"$sql"
  fi
  echo "900-grafana-reader: read-only user '$user' may read $database.log"
}

coffer_grafana_reader
