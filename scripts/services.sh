#!/usr/bin/env bash
# Real servers for the test suite, without systemd (Debian 12, root): MariaDB, PostgreSQL, and
# an S3 server (single-node Ceph with radosgw, scripts/ceph.sh).
#
#   scripts/services.sh start   install (when missing) and start MariaDB and PostgreSQL on private
#                               data directories and ports, create the test database and user,
#                               and write their URLs to $SERVICES_ENV (sourced by make/CI)
#   scripts/services.sh stop    stop every server
#   scripts/services.sh stop-started
#                               stop only the servers the last `start` started (CI uses this, so
#                               servers that were already running for someone else stay up)
#   scripts/services.sh status  say which ones answer
#   scripts/services.sh env     print `export` lines for the servers that answer (make test
#                               evaluates them: engines without a server are not compiled in)
#   scripts/services.sh restart mysql|postgres|s3 [pause-seconds]
#                               stop one server, stay down for the pause (default 2), start it
#                               again (the fault tests use this)
#
# MariaDB: data in $SERVICES_DIR/mysql, port 3307, user tidefs / database tidefs.
# PostgreSQL: the packaged cluster (15/main, port 5432), user tidefs / database tidefs.
set -euo pipefail

SERVICES_DIR=${SERVICES_DIR:-/var/tmp/tidefs-services}
SERVICES_ENV=${SERVICES_ENV:-$SERVICES_DIR/env}
MYSQL_PORT=${MYSQL_PORT:-3307}
PG_VERSION=${PG_VERSION:-15}
DB_USER=tidefs
DB_PASS=${DB_PASS:-tidefs-test-pw}
DB_NAME=tidefs

M=$SERVICES_DIR/mysql
CEPH="$(dirname "$0")/ceph.sh"
export CEPH_DIR=${CEPH_DIR:-$SERVICES_DIR/ceph}
SOCK=$M/run/mysqld.sock

log() { echo "services: $*" >&2; }

install_missing() {
  local pkgs=()
  command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || pkgs+=(mariadb-server)
  command -v pg_ctlcluster >/dev/null || pkgs+=(postgresql)
  if [ ${#pkgs[@]} -gt 0 ]; then
    log "installing ${pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
  fi
}

mysql_up() { mariadb-admin --socket="$SOCK" ping >/dev/null 2>&1; }
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1; }

start_mysql() {
  if mysql_up; then
    log "MariaDB already running on $SOCK"
  else
    mkdir -p "$M/data" "$M/run"
    chown -R mysql:mysql "$M"
    if [ ! -d "$M/data/mysql" ]; then
      mariadb-install-db --user=mysql --datadir="$M/data" \
        --auth-root-authentication-method=socket --skip-test-db >"$M/run/install.log" 2>&1
    fi
    start-stop-daemon --start --background --pidfile "$M/run/mariadbd.pid" --make-pidfile \
      --chuid mysql --exec /usr/sbin/mariadbd -- --no-defaults --datadir="$M/data" \
      --socket="$SOCK" --port="$MYSQL_PORT" --bind-address=127.0.0.1 \
      --log-error="$M/run/err.log"
    for _ in $(seq 1 100); do mysql_up && break; sleep 0.1; done
    mysql_up || { log "MariaDB did not start; see $M/run/err.log"; tail -20 "$M/run/err.log" >&2; exit 1; }
  fi
  mariadb --socket="$SOCK" -u root <<SQL
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON *.* TO '$DB_USER'@'localhost';
GRANT ALL ON *.* TO '$DB_USER'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
}

start_pg() {
  if ! pg_up; then
    pg_ctlcluster "$PG_VERSION" main start
    for _ in $(seq 1 100); do pg_up && break; sleep 0.1; done
    pg_up || { log "PostgreSQL did not start"; exit 1; }
  fi
  su postgres -c "psql -q -v ON_ERROR_STOP=1" <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN
    CREATE ROLE $DB_USER LOGIN SUPERUSER PASSWORD '$DB_PASS';
  END IF;
END \$\$;
SQL
  if ! su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'\"" | grep -q 1; then
    su postgres -c "createdb -O $DB_USER $DB_NAME"
  fi
}

write_env() {
  mkdir -p "$(dirname "$SERVICES_ENV")"
  cat >"$SERVICES_ENV" <<ENV
export TIDEFS_TEST_MYSQL='mysql://$DB_USER:$DB_PASS@(127.0.0.1:$MYSQL_PORT)/$DB_NAME'
export TIDEFS_TEST_POSTGRES='postgres://$DB_USER:$DB_PASS@127.0.0.1:5432/$DB_NAME?sslmode=disable'
export TIDEFS_TEST_MYSQL_SOCKET='$SOCK'
$("$CEPH" env)
ENV
  log "URLs in $SERVICES_ENV"
}

stop_mysql() {
  if [ -f "$M/run/mariadbd.pid" ]; then
    start-stop-daemon --stop --pidfile "$M/run/mariadbd.pid" --retry 30 >/dev/null || true
    rm -f "$M/run/mariadbd.pid"
  fi
}

stop_pg() {
  if pg_up; then pg_ctlcluster "$PG_VERSION" main stop -m fast || true; fi
}

stop_all() {
  "$CEPH" stop || true
  stop_mysql
  stop_pg
}

case "${1:-}" in
  start)
    install_missing
    started=()
    mysql_up || started+=(mysql)
    pg_up || started+=(postgres)
    "$CEPH" status | grep -q ': up' || started+=(s3)
    start_mysql; start_pg; "$CEPH" start; write_env
    mkdir -p "$SERVICES_DIR"
    printf '%s\n' "${started[@]}" >"$SERVICES_DIR/started"
    ;;
  stop-started)
    if [ -f "$SERVICES_DIR/started" ]; then
      while read -r svc; do
        case "$svc" in
          mysql) stop_mysql ;;
          postgres) stop_pg ;;
          s3) "$CEPH" stop || true ;;
        esac
      done <"$SERVICES_DIR/started"
      rm -f "$SERVICES_DIR/started"
    fi
    ;;
  stop) stop_all ;;
  env)
    mysql_up && echo "export TIDEFS_TEST_MYSQL='mysql://$DB_USER:$DB_PASS@(127.0.0.1:$MYSQL_PORT)/$DB_NAME'"
    pg_up && echo "export TIDEFS_TEST_POSTGRES='postgres://$DB_USER:$DB_PASS@127.0.0.1:5432/$DB_NAME?sslmode=disable'"
    "$CEPH" env
    true
    ;;
  restart)
    pause=${3:-2}
    case "${2:-}" in
      mysql) stop_mysql; sleep "$pause"; start_mysql ;;
      postgres) stop_pg; sleep "$pause"; start_pg ;;
      s3) "$CEPH" restart "$pause" ;;
      *) echo "usage: $0 restart mysql|postgres|s3 [pause-seconds]" >&2; exit 2 ;;
    esac
    ;;
  status)
    mysql_up && echo "mariadb: up ($SOCK)" || echo "mariadb: down"
    pg_up && echo "postgresql: up (127.0.0.1:5432)" || echo "postgresql: down"
    "$CEPH" status
    ;;
  *) echo "usage: $0 start|stop|stop-started|status|env|restart" >&2; exit 2 ;;
esac
