#!/usr/bin/env bash
# scripts/infra/redis.sh up|down|status|env|reset
# A throw-away Redis on 127.0.0.1:${DOPPEL_REDIS_PORT:-16379}: installs Debian's
# redis-server if it is missing (apt, root or passwordless sudo), runs it with
# no persistence (--save "" --appendonly no), pid and log under .infra/redis/.
# If DOPPEL_REDIS is set (to another server), nothing is installed or started.
INFRA_NAME=redis
# shellcheck source=lib.sh disable=SC2034  # (variables here are read by lib.sh)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REDIS_PORT="${DOPPEL_REDIS_PORT:-16379}"
REDIS_DIR="$INFRA_DIR/redis"
PID_FILE="$REDIS_DIR/redis.pid"
PROC_MATCH=redis-server
LOG_FILES=("$REDIS_DIR/redis.log")
OUR_URL="redis://$INFRA_HOST:$REDIS_PORT"

svc_external() { external_or_empty DOPPEL_REDIS "$OUR_URL"; }
svc_ports() { echo "$REDIS_PORT"; }
svc_data_dirs() { echo "$REDIS_DIR/data"; }
svc_env() { echo "export DOPPEL_REDIS=${DOPPEL_REDIS:-$OUR_URL}"; }

svc_install() {
  if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    return 0
  fi
  apt_install redis-server || die "could not install redis-server with apt-get"
}

svc_start() {
  mkdir -p "$REDIS_DIR/data"
  rm -f "$PID_FILE"
  echo "=== $(date -Is) starting $(redis-server --version | head -n1)" >>"${LOG_FILES[0]}"
  # --daemonize: redis forks and writes its own pid file.
  # shellcheck disable=SC2094  # redis appends to the log it is given, like the redirect
  redis-server --port "$REDIS_PORT" --bind "$INFRA_HOST" \
    --save "" --appendonly no --daemonize yes \
    --dir "$REDIS_DIR/data" --pidfile "$PID_FILE" --logfile "${LOG_FILES[0]}" \
    </dev/null >>"${LOG_FILES[0]}" 2>&1 || die "redis-server failed to start"
  wait_pid_file
}

# The daemonized redis writes its pid file a moment after the fork.
wait_pid_file() {
  local i
  for ((i = 0; i < 50; i++)); do
    pid_alive && return 0
    sleep 0.1
  done
  die "redis-server did not write $PID_FILE"
}

svc_ready() { [[ "$(redis-cli -h "$INFRA_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; }

READY_TIMEOUT=20
STOP_TIMEOUT=15
infra_main "$@"
