#!/usr/bin/env bash
# scripts/infra/all.sh up|down|status|env|reset
# Runs the same command for all test servers: Cassandra, NATS (+JetStream,
# MQTT) and Redis. `up` starts all three in parallel, Cassandra (the slowest)
# first, and waits for Cassandra last; it fails if any of them failed.
# Typical use:  scripts/infra/all.sh up && eval "$(scripts/infra/all.sh env)"
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cmd="${1:-}"

case "$cmd" in
  up)
    "$HERE/cassandra.sh" up &
    cassandra_job=$!
    "$HERE/nats.sh" up &
    nats_job=$!
    rc=0
    "$HERE/redis.sh" up || rc=1
    wait "$nats_job" || rc=1
    wait "$cassandra_job" || rc=1
    if ((rc != 0)); then
      echo "[infra:all] ERROR: some servers failed to start (see above)" >&2
    fi
    exit "$rc"
    ;;
  down | reset)
    rc=0
    for s in nats redis cassandra; do "$HERE/$s.sh" "$cmd" || rc=1; done
    exit "$rc"
    ;;
  status)
    rc=0
    for s in nats redis cassandra; do "$HERE/$s.sh" status || rc=$?; done
    exit "$rc"
    ;;
  env)
    for s in nats redis cassandra; do "$HERE/$s.sh" env; done
    ;;
  *)
    echo "usage: $0 up|down|status|env|reset" >&2
    exit 2
    ;;
esac
