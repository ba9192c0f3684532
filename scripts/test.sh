#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs npm dependencies if needed, type-checks, lints,
# checks the layers, compiles dist/, runs the unit tests, then starts real NATS, Redis and Cassandra on loopback (installing them on
# first use; skipped for servers that DOPPEL_NATS / DOPPEL_REDIS / DOPPEL_CASSANDRA point at),
# runs the integration tests against them, and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

node scripts/ensure-deps.mjs
echo "== types, lint, layers"
npx tsc --noEmit -p .
npx tsc --noEmit -p console
npx biome ci .
npx depcruise runtime cluster twins --config .dependency-cruiser.cjs

echo "== build"
node scripts/build.mjs

echo "== unit tests"
npx vitest run --project unit

echo "== servers"
scripts/infra/all.sh up
trap 'scripts/infra/all.sh down' EXIT
eval "$(scripts/infra/all.sh env)"

echo "== integration tests"
npx vitest run --project integration --passWithNoTests
