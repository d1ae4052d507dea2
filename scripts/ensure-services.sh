#!/usr/bin/env bash
# Make sure the local PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) are up.
# Starts them when they are down; installs them with apt when missing and running as root.
# Never stops anything.
set -euo pipefail

log() { printf '[services] %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && exec 3>&- 3<&-; }

wait_port() {
  for _ in $(seq 1 50); do port_open "$1" && return 0; sleep 0.2; done
  return 1
}

apt_install() { APT_TAG=services "$(dirname "$0")/apt-install.sh" "$@"; }

ensure_postgres() {
  port_open 5432 && return 0
  log "PostgreSQL is not listening on 127.0.0.1:5432"
  command -v pg_ctlcluster >/dev/null || apt_install postgresql postgresql-client
  local ver
  ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
  if [ -z "$ver" ]; then log "no PostgreSQL cluster found"; return 1; fi
  log "starting PostgreSQL $ver"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  wait_port 5432 || { log "PostgreSQL did not come up on 5432"; return 1; }
}

ensure_redis() {
  port_open 6379 && return 0
  log "Redis is not listening on 127.0.0.1:6379"
  command -v redis-server >/dev/null || apt_install redis-server redis-tools
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379 || { log "Redis did not come up on 6379"; return 1; }
}

ensure_postgres
ensure_redis
# redis-server is also needed on PATH for tests that start their own instances (cluster, kill tests)
command -v redis-server >/dev/null || apt_install redis-server redis-tools
log "PostgreSQL and Redis are up"
