#!/usr/bin/env bash
# scripts/deploy/validate.sh — static validation of the deployment files, offline.
#
#   scripts/deploy/validate.sh              every check below (installs the tools on first use)
#   scripts/deploy/validate.sh tools        install the tools only
#   scripts/deploy/validate.sh compose|nats|helm|dockerfile     one group of checks
#   scripts/deploy/validate.sh helm ARGS...         the pinned helm (e.g. helm template ...)
#   scripts/deploy/validate.sh kubeconform FILE...  kubeconform -strict with the offline schemas
#
# What it checks (nothing is built, started or deployed: there is no container engine here):
#   compose     docker compose -f compose.yaml config -q (Compose built from source, used as the
#               docker CLI plugin), plus the facts the nodes depend on (services, health-gated
#               start, loopback-only ports)
#   nats        nats-server -t on deploy/compose/nats/nats.conf for each of the three servers (the
#               same 2.12 release as the compose image); deploy/compose/doppel.json against the
#               node's configuration schema
#   helm        helm lint --strict, then helm template (insecure and TLS variants) piped to
#               kubeconform -strict against Kubernetes JSON schemas made offline from the
#               OpenAPI spec in the k8s.io/kubernetes Go module; the chart's guards (no TLS
#               and not insecure -> a clear failure) and a strictness self-test of kubeconform
#   dockerfile  the Dockerfile parsed by BuildKit's own parser and linted with its build checks
#               (those of docker build --check), plus the image facts docs/deploy.md promises
#
# Tools go to .infra/bin (helm, kubeconform, docker-compose) and .infra/deploy (nats-server 2.12,
# schemas, the Dockerfile checker), built with `go install` / `go build` from the Go module proxy,
# once per pinned version. Any failure exits non-zero with a line naming what is wrong.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
INFRA="$ROOT/.infra"
BIN="$INFRA/bin"
CACHE="$INFRA/deploy"
CHART="deploy/helm/doppel"

HELM_VERSION=v3.22.0
KUBECONFORM_VERSION=v0.8.0
COMPOSE_VERSION=v2.40.3
NATS_VERSION=v2.12.15 # compose.yaml runs nats:2.12
K8S_VERSION=v1.35.4   # schemas and helm's --kube-version
SCHEMAS="$CACHE/k8s-schemas"

export GOTOOLCHAIN=local # a module that needs a newer Go fails here, loudly, instead of fetching one
export GOFLAGS="${GOFLAGS:-} -modcacherw"
export CGO_ENABLED=0

log() { echo "[deploy] $*" >&2; }
die() {
  echo "[deploy] FAILED: $*" >&2
  exit 1
}
step() {
  STEP_T0=$SECONDS
  log "== $*"
}
done_step() { log "   ok ($((SECONDS - STEP_T0))s)"; }

# Builds run at low CPU priority: the test suite runs this beside other tests on two cores.
go() { nice -n 10 "$(type -P go)" "$@"; }

need() { type -P "$1" >/dev/null 2>&1 || die "$1 is not installed ($2)"; }

# mod_dir MODULE@VERSION: downloads a module from the Go module proxy, prints its directory.
mod_dir() {
  local json dir
  json="$(go mod download -json "$1" 2>&1)" || die "go mod download $1 failed: $json"
  dir="$(printf '%s' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -n "$dir" && -d "$dir" ]] || die "go mod download $1 gave no directory: $json"
  echo "$dir"
}

install_helm() {
  if [[ -x "$BIN/helm" && "$("$BIN/helm" version --template '{{.Version}}' 2>/dev/null)" == "$HELM_VERSION" ]]; then
    return 0
  fi
  need go "to build helm"
  log "building helm $HELM_VERSION into .infra/bin (go install, a few minutes the first time)"
  local k8s_minor="${K8S_VERSION#v1.}"
  k8s_minor="${k8s_minor%%.*}"
  # The release Makefile's version stamps: without them helm says v3.22 and assumes Kubernetes 1.20.
  GOBIN="$BIN" go install -trimpath -ldflags "-s -w \
    -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" || die "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION failed"
}

install_kubeconform() {
  if [[ -x "$BIN/kubeconform" && "$("$BIN/kubeconform" -v 2>/dev/null)" == "$KUBECONFORM_VERSION" ]]; then
    return 0
  fi
  need go "to build kubeconform"
  log "building kubeconform $KUBECONFORM_VERSION into .infra/bin (go install)"
  GOBIN="$BIN" go install -trimpath -ldflags "-s -w -X main.version=$KUBECONFORM_VERSION" \
    "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" ||
    die "go install github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION failed"
}

# Docker Compose v2: its go.mod has exclude directives, so `go install module@version` refuses it;
# it builds from the module's own directory (as its Makefile does) with `go build ./cmd`.
install_compose() {
  if [[ -x "$BIN/docker-compose" && "$("$BIN/docker-compose" version --short 2>/dev/null)" == "${COMPOSE_VERSION#v}" ]]; then
    install_compose_plugin
    return 0
  fi
  need go "to build docker compose"
  log "building docker compose $COMPOSE_VERSION into .infra/bin (go build, several minutes the first time)"
  local src="$CACHE/src/compose-$COMPOSE_VERSION" dir
  dir="$(mod_dir "github.com/docker/compose/v2@$COMPOSE_VERSION")"
  rm -rf "$src"
  mkdir -p "$CACHE/src" "$BIN"
  cp -R "$dir" "$src"
  chmod -R u+w "$src"
  (cd "$src" && go build -trimpath \
    -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" \
    -o "$BIN/docker-compose" ./cmd) || die "go build of docker compose $COMPOSE_VERSION failed"
  rm -rf "$src"
  install_compose_plugin
}

# `docker compose` finds the plugin in $DOCKER_CONFIG/cli-plugins: a private DOCKER_CONFIG under
# .infra, so the user's own docker configuration is neither read nor changed.
install_compose_plugin() {
  mkdir -p "$CACHE/docker/cli-plugins"
  ln -sf "$BIN/docker-compose" "$CACHE/docker/cli-plugins/docker-compose"
}

# nats-server of the compose image's release, kept apart from .infra/bin/nats-server (the test
# servers' newer release, scripts/infra/nats.sh).
NATS_BIN="$CACHE/nats-$NATS_VERSION/nats-server"
install_nats() {
  if [[ -x "$NATS_BIN" && "$("$NATS_BIN" --version 2>/dev/null)" == *"$NATS_VERSION" ]]; then
    return 0
  fi
  need go "to build nats-server"
  log "building nats-server $NATS_VERSION into .infra/deploy (go install)"
  GOBIN="$(dirname "$NATS_BIN")" go install -trimpath "github.com/nats-io/nats-server/v2@$NATS_VERSION" ||
    die "go install github.com/nats-io/nats-server/v2@$NATS_VERSION failed"
}

# Kubernetes JSON schemas, offline: the OpenAPI spec shipped in the k8s.io/kubernetes module,
# converted by scripts/deploy/k8s-jsonschema.mjs (regenerated when the converter changes).
install_schemas() {
  local stamp want dir
  stamp="$SCHEMAS/.stamp"
  want="$K8S_VERSION $(sha256sum scripts/deploy/k8s-jsonschema.mjs | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  need go "to download the Kubernetes OpenAPI spec"
  log "making Kubernetes $K8S_VERSION JSON schemas in .infra/deploy/k8s-schemas"
  dir="$(mod_dir "k8s.io/kubernetes@$K8S_VERSION")"
  [[ -f "$dir/api/openapi-spec/swagger.json" ]] || die "no api/openapi-spec/swagger.json in k8s.io/kubernetes@$K8S_VERSION"
  mkdir -p "$SCHEMAS"
  node scripts/deploy/k8s-jsonschema.mjs "$dir/api/openapi-spec/swagger.json" "$SCHEMAS" "$K8S_VERSION" ||
    die "converting the Kubernetes OpenAPI spec failed"
  echo "$want" >"$stamp"
}

DOCKERFILE_CHECK="$CACHE/dockerfile-check/dockerfile-check"
install_dockerfile_check() {
  local src="scripts/deploy/dockerfile-check" want
  want="$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -d' ' -f1)"
  if [[ -x "$DOCKERFILE_CHECK" && "$(cat "$DOCKERFILE_CHECK.stamp" 2>/dev/null)" == "$want" ]]; then
    return 0
  fi
  need go "to build the Dockerfile checker"
  log "building the Dockerfile checker (BuildKit's parser and linter) into .infra/deploy"
  mkdir -p "$(dirname "$DOCKERFILE_CHECK")"
  (cd "$src" && go build -trimpath -mod=readonly -o "$DOCKERFILE_CHECK" .) ||
    die "go build of scripts/deploy/dockerfile-check failed"
  echo "$want" >"$DOCKERFILE_CHECK.stamp"
}

install_tools() {
  step "tools (helm $HELM_VERSION, kubeconform $KUBECONFORM_VERSION, compose $COMPOSE_VERSION, nats-server $NATS_VERSION, Kubernetes $K8S_VERSION schemas)"
  need node "Node.js 20"
  mkdir -p "$BIN" "$CACHE"
  install_helm
  install_kubeconform
  install_compose
  install_nats
  install_schemas
  install_dockerfile_check
  done_step
}

HELM() { "$BIN/helm" "$@"; }
KUBECONFORM() {
  "$BIN/kubeconform" -strict -summary -kubernetes-version "${K8S_VERSION#v}" -schema-location "$SCHEMAS" "$@"
}
COMPOSE() {
  if command -v docker >/dev/null 2>&1 && DOCKER_CONFIG="$CACHE/docker" docker compose version >/dev/null 2>&1; then
    DOCKER_CONFIG="$CACHE/docker" docker compose "$@"
  else
    "$BIN/docker-compose" "$@"
  fi
}

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

check_compose() {
  step "compose: docker compose -f compose.yaml config -q"
  COMPOSE -f compose.yaml config -q || die "compose.yaml is invalid (docker compose config)"
  COMPOSE -f compose.yaml config --format json >"$TMP/compose.json" || die "docker compose config --format json failed"
  node - "$TMP/compose.json" <<'EOF' || die "compose.yaml does not have what docs/deploy.md describes (above)"
const project = JSON.parse(require("node:fs").readFileSync(process.argv[2], "utf8"));
const problems = [];
const services = project.services ?? {};
const want = ["doppel-1", "doppel-2", "doppel-3", "nats-1", "nats-2", "nats-3", "cassandra", "redis"];
for (const name of want) if (!services[name]) problems.push(`service ${name} is missing`);
for (const [name, service] of Object.entries(services)) {
  if (!name.startsWith("doppel-") && !service.healthcheck?.test) problems.push(`${name} has no health check`);
  for (const port of service.ports ?? []) {
    if (port.host_ip !== "127.0.0.1") problems.push(`${name} publishes ${port.target} beyond loopback`);
  }
}
for (const name of want.filter((n) => n.startsWith("doppel-"))) {
  const service = services[name];
  if (!service) continue;
  for (const dep of want.filter((n) => !n.startsWith("doppel-"))) {
    if (service.depends_on?.[dep]?.condition !== "service_healthy") problems.push(`${name} does not wait for ${dep} to be healthy`);
  }
  const env = service.environment ?? {};
  for (const key of ["DOPPEL_NODE_ID", "DOPPEL_LISTEN", "DOPPEL_NATS", "DOPPEL_REDIS", "DOPPEL_CASSANDRA",
    "DOPPEL_CLUSTER", "DOPPEL_METRICS", "DOPPEL_DATA_DIR", "DOPPEL_LOG_LEVEL"]) {
    if (!env[key]) problems.push(`${name} has no ${key}`);
  }
  if (env.DOPPEL_NODE_ID !== name) problems.push(`${name} has DOPPEL_NODE_ID ${env.DOPPEL_NODE_ID}`);
  const command = service.command ?? [];
  if (command[0] !== "start" || !command.includes("--insecure") || !command.includes("--no-demo")) {
    problems.push(`${name} command is ${JSON.stringify(command)}, expected start --insecure --no-demo`);
  }
}
if (problems.length > 0) {
  for (const p of problems) console.error(`[deploy]   ${p}`);
  process.exit(1);
}
EOF
  done_step
}

check_nats() {
  step "nats: nats-server $NATS_VERSION -t on deploy/compose/nats/nats.conf (nats-1..3)"
  local n out
  for n in 1 2 3; do
    out="$(NATS_SERVER_NAME="nats-$n" "$NATS_BIN" -c deploy/compose/nats/nats.conf -t 2>&1)" ||
      die "deploy/compose/nats/nats.conf is invalid for nats-$n: $out"
  done
  done_step
  step "compose: deploy/compose/doppel.json against the node's configuration schema"
  node -e 'JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8"))' deploy/compose/doppel.json ||
    die "deploy/compose/doppel.json is not JSON"
  check_node_config deploy/compose/doppel.json
  done_step
}

# The compose nodes' configuration: the file plus what their environment adds (Cassandra store,
# cluster in Redis), compiled by the node's own schema when this checkout has it (the source tree
# is being restructured: the check names what it skipped rather than failing on a moved file).
check_node_config() {
  local options
  options="$(ls runtime/node/options.ts src/node/options.ts 2>/dev/null | head -n1 || true)"
  if [[ -z "$options" || ! -d node_modules/tsx ]]; then
    log "   skipped: the node's options module or node_modules/tsx is not here (run npm ci to check it)"
    return 0
  fi
  node --import tsx/esm --input-type=module -e '
    import { readFileSync } from "node:fs";
    import { pathToFileURL } from "node:url";
    const [file, options] = process.argv.slice(1);
    const { compileConfig } = await import(pathToFileURL(options).href);
    const config = JSON.parse(readFileSync(file, "utf8"));
    config.store = { kind: "cassandra", contactPoints: ["cassandra:9042"] };
    config.cluster = { name: "doppel", redis: "redis://redis:6379" };
    compileConfig(config, file);
  ' "$1" "$ROOT/$options" || die "$1 is refused by the node's configuration schema ($options)"
}

# helm template VARIANT -> $TMP/VARIANT.yaml
render() {
  local variant="$1"
  shift
  HELM template doppel "$CHART" --namespace doppel --kube-version "$K8S_VERSION" "$@" >"$TMP/$variant.yaml" ||
    die "helm template ($variant) failed"
}

expect_in() {
  grep -qE -- "$2" "$TMP/$1.yaml" || die "helm template ($1): expected /$2/ in the manifests"
}
expect_not_in() {
  if grep -qE -- "$2" "$TMP/$1.yaml"; then die "helm template ($1): unexpected /$2/ in the manifests"; fi
}

check_helm() {
  local variant
  step "helm: lint --strict $CHART (insecure and TLS values)"
  for variant in insecure tls; do
    HELM lint --strict --kube-version "$K8S_VERSION" "$CHART" -f "$CHART/ci/$variant-values.yaml" ||
      die "helm lint ($variant values) failed"
  done
  done_step

  step "helm: template | kubeconform -strict (Kubernetes $K8S_VERSION schemas, offline)"
  for variant in insecure tls; do
    render "$variant" -f "$CHART/ci/$variant-values.yaml"
    for kind in StatefulSet Service PodDisruptionBudget ServiceAccount ConfigMap; do
      expect_in "$variant" "^kind: $kind\$"
    done
    log "   $variant:"
    KUBECONFORM "$TMP/$variant.yaml" || die "the chart's manifests ($variant values) are invalid (kubeconform above)"
  done
  expect_in insecure '^ +- --insecure$'
  expect_in insecure '^ +grpc:$'
  expect_not_in tls '--insecure'
  expect_in tls '^ +- --tls-cert$'
  expect_in tls 'secretName: doppel-tls'
  expect_in tls 'fieldPath: metadata.name'
  done_step

  step "helm: the chart refuses to render without TLS unless insecure=true"
  if HELM template doppel "$CHART" --kube-version "$K8S_VERSION" >"$TMP/none.yaml" 2>"$TMP/none.err"; then
    die "helm template with insecure=false and no tls.secretName rendered (it must fail)"
  fi
  grep -q "tls.secretName is required" "$TMP/none.err" ||
    die "helm template without TLS failed, but not with the expected message: $(cat "$TMP/none.err")"
  done_step

  step "kubeconform: refuses an unknown field (proves the offline schemas are strict)"
  sed 's/^  serviceName: /  serviceNam: /' "$TMP/insecure.yaml" >"$TMP/broken.yaml"
  if KUBECONFORM "$TMP/broken.yaml" >"$TMP/broken.out" 2>&1; then
    die "kubeconform accepted a StatefulSet with an unknown field spec.serviceNam: the schemas are not strict"
  fi
  grep -q "serviceNam" "$TMP/broken.out" || die "kubeconform failed on the broken manifest for another reason: $(cat "$TMP/broken.out")"
  done_step
}

check_dockerfile() {
  step "dockerfile: BuildKit parser and build checks; the image's promised settings"
  "$DOCKERFILE_CHECK" Dockerfile || die "Dockerfile check failed (above)"
  done_step
}

main() {
  local t0=$SECONDS
  case "${1:-all}" in
    all)
      install_tools
      check_compose
      check_nats
      check_helm
      check_dockerfile
      log "all deployment checks passed ($((SECONDS - t0))s)"
      ;;
    tools) install_tools ;;
    compose) install_tools && check_compose ;;
    nats) install_tools && check_nats ;;
    helm)
      if [[ $# -gt 1 ]]; then
        shift
        install_helm >&2
        HELM "$@"
      else
        install_tools && check_helm
      fi
      ;;
    kubeconform)
      shift
      install_kubeconform >&2
      install_schemas >&2
      KUBECONFORM "$@"
      ;;
    dockerfile) install_tools && check_dockerfile ;;
    *)
      echo "usage: $0 [all|tools|compose|nats|helm [ARGS...]|kubeconform FILE...|dockerfile]" >&2
      exit 2
      ;;
  esac
}

main "$@"
