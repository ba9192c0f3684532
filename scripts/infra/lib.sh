# shellcheck shell=bash disable=SC2034
# scripts/infra/lib.sh — shared helpers for the scripts/infra/*.sh server scripts.
# Sourced, not run. Gives: repo root / .infra paths, logging, port and pid-file
# handling, readiness polling, log tails on failure, root-or-sudo for apt, and
# infra_main, the common up|down|status|env|reset dispatcher.
#
# A server script sets INFRA_NAME, then defines:
#   svc_external   -> prints the user's own server address if they set one (or nothing)
#   svc_ports      -> prints the loopback ports the server listens on
#   svc_install    -> idempotent install (cached under .infra/)
#   svc_start      -> starts the server in the background, writes $PID_FILE
#   svc_ready      -> exit 0 once the server answers
#   svc_env        -> prints `export ...` lines
#   svc_data_dirs  -> prints directories that `reset` wipes
# and optionally svc_after_ready (a final check), svc_after_clean_stop (after a
# 'down' that did not need KILL), READY_TIMEOUT and STOP_TIMEOUT (seconds).

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
INFRA_DIR="$REPO_ROOT/.infra"
INFRA_SCRIPTS="$REPO_ROOT/scripts/infra"
INFRA_HOST=127.0.0.1

log() { echo "[infra:${INFRA_NAME:-infra}] $*" >&2; }

# die MESSAGE: print the message and the server's log tail, exit 1.
die() {
  log "ERROR: $*"
  show_log_tail
  exit 1
}

# Log files shown on failure: the script sets LOG_FILES=(...).
show_log_tail() {
  local f
  for f in "${LOG_FILES[@]:-}"; do
    [[ -n "$f" && -s "$f" ]] || continue
    echo "----- last 40 lines of $f -----" >&2
    tail -n 40 "$f" | cut -c1-400 >&2
    echo "-----" >&2
  done
}

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/$INFRA_HOST/$1" 2>/dev/null
}

# port_owner PORT: best-effort description of who listens on the port.
port_owner() {
  if command -v ss >/dev/null 2>&1; then
    ss -Hltnp "sport = :$1" 2>/dev/null | sed 's/^/    /' || true
  fi
}

# pid_alive: true when $PID_FILE names a live process (and, where /proc
# exists, one whose command line contains $PROC_MATCH: a stale pid file whose
# pid was reused by another program does not count).
pid_alive() {
  local pid
  [[ -f "$PID_FILE" ]] || return 1
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  if [[ -n "${PROC_MATCH:-}" && -r "/proc/$pid/cmdline" ]]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$PROC_MATCH"
  fi
}

read_pid() { cat "$PID_FILE" 2>/dev/null || true; }

# stop_pid_file [TIMEOUT]: TERM the process in $PID_FILE, wait for it to exit
# (KILL after TIMEOUT seconds), remove the pid file. Returns 1 if KILL was needed.
stop_pid_file() {
  local timeout_s="${1:-30}" pid i
  if ! pid_alive; then
    rm -f "$PID_FILE"
    return 0
  fi
  pid="$(read_pid)"
  log "stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout_s * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid still alive after ${timeout_s}s: sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    rm -f "$PID_FILE"
    return 1
  fi
  rm -f "$PID_FILE"
}

# wait_until TIMEOUT DESCRIPTION CMD...: poll CMD every 0.2 s until it succeeds.
# Fails early (with the log tail) if the server process in $PID_FILE dies.
wait_until() {
  local timeout_s="$1" what="$2" start
  shift 2
  start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if ! pid_alive; then
      die "$INFRA_NAME exited while waiting for $what"
    fi
    if ((SECONDS - start >= timeout_s)); then
      die "timed out after ${timeout_s}s waiting for $what"
    fi
    sleep 0.2
  done
}

# as_root CMD...: run as root (directly, or with passwordless sudo).
as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@" || {
      log "ERROR: '$*' needs root: passwordless sudo failed"
      return 1
    }
  else
    log "ERROR: '$*' needs root and sudo is not installed"
    return 1
  fi
}

# apt_install PKG...: apt-get update + install, non-interactive.
apt_install() {
  log "installing Debian packages: $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# run_bg LOGFILE CMD...: start CMD detached (own session, no inherited fds),
# print its pid.
run_bg() {
  local out="$1"
  shift
  nohup setsid "$@" </dev/null >>"$out" 2>&1 &
  echo $!
}

# is_running: our pid file is alive and every port answers.
is_running() {
  local p
  pid_alive || return 1
  for p in $(svc_ports); do port_open "$p" || return 1; done
}

cmd_up() {
  local ext p t0=$SECONDS
  ext="$(svc_external)"
  if [[ -n "$ext" ]]; then
    log "using your own server at $ext (set by you): not installing or starting one"
    return 0
  fi
  if pid_alive; then
    # Ours (running, or still starting from another 'up'): just wait for it.
    wait_until "${READY_TIMEOUT:-30}" "$INFRA_NAME to be ready" svc_ready
    log "already running (pid $(read_pid))"
    return 0
  fi
  for p in $(svc_ports); do
    if port_open "$p"; then
      log "ERROR: port $INFRA_HOST:$p is already in use by another process (not started by this script):"
      port_owner "$p" >&2
      log "stop that process, or choose other ports (see the DOPPEL_*_PORT variables in $0)"
      exit 1
    fi
  done
  svc_install
  svc_start
  wait_until "${READY_TIMEOUT:-30}" "$INFRA_NAME to be ready" svc_ready
  if declare -F svc_after_ready >/dev/null; then
    svc_after_ready || die "$INFRA_NAME started but its final check failed"
  fi
  log "up (pid $(read_pid), ready in $((SECONDS - t0))s)"
}

cmd_down() {
  if [[ -n "$(svc_external)" ]]; then
    log "using your own server at $(svc_external): nothing to stop"
  fi
  if pid_alive; then
    if stop_pid_file "${STOP_TIMEOUT:-30}"; then
      if declare -F svc_after_clean_stop >/dev/null; then svc_after_clean_stop; fi
    fi
    log "stopped"
  else
    rm -f "$PID_FILE"
    log "not running"
  fi
}

cmd_status() {
  local ext
  ext="$(svc_external)"
  if [[ -n "$ext" ]]; then
    echo "$INFRA_NAME: external (your server at $ext)"
  elif is_running && svc_ready >/dev/null 2>&1; then
    echo "$INFRA_NAME: running (pid $(read_pid)) on $INFRA_HOST ports $(svc_ports | tr '\n' ' ')"
  elif pid_alive; then
    echo "$INFRA_NAME: starting or unhealthy (pid $(read_pid)); log: ${LOG_FILES[0]}"
    return 1
  else
    echo "$INFRA_NAME: stopped"
    return 3
  fi
}

cmd_reset() {
  local d
  cmd_down
  for d in $(svc_data_dirs); do
    case "$d" in
      "$INFRA_DIR"/*) rm -rf "$d" ;;
      *) die "refusing to wipe $d (outside $INFRA_DIR)" ;;
    esac
  done
  log "data wiped (downloads kept)"
}

infra_main() {
  local cmd="${1:-}"
  case "$cmd" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) svc_env ;;
    reset) cmd_reset ;;
    *)
      echo "usage: $0 up|down|status|env|reset" >&2
      exit 2
      ;;
  esac
}

# external_or_empty VAR OURS: prints VAR's value when the user set it to a
# server other than ours (a value equal to ours, e.g. from `eval $(... env)`,
# still means "ours").
external_or_empty() {
  local val="${!1:-}"
  if [[ -n "$val" && "$val" != "$2" ]]; then echo "$val"; fi
}
