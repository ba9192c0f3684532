#!/usr/bin/env bash
# scripts/infra/schemathesis.sh: makes sure Schemathesis (the schema-driven API fuzzer the REST
# contract test runs against the served OpenAPI document) is installed in a Python venv under
# .infra/schemathesis, and prints the path of its `st` command. Installs it from PyPI with pip
# when missing or at another version (python3 with venv; apt-get python3-venv when that is
# missing). DOPPEL_SCHEMATHESIS names another `st` binary to use instead.
INFRA_NAME=schemathesis
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SCHEMATHESIS_VERSION=4.32.5
VENV="$INFRA_DIR/schemathesis"
ST="$VENV/bin/st"

if [[ -n "${DOPPEL_SCHEMATHESIS:-}" ]]; then
  [[ -x "$DOPPEL_SCHEMATHESIS" ]] || die "DOPPEL_SCHEMATHESIS=$DOPPEL_SCHEMATHESIS is not an executable"
  echo "$DOPPEL_SCHEMATHESIS"
  exit 0
fi
installed() {
  [[ -x "$ST" ]] && [[ "$("$VENV/bin/pip" show schemathesis 2>/dev/null | sed -n 's/^Version: //p')" == "$SCHEMATHESIS_VERSION" ]]
}
if ! installed; then
  command -v python3 >/dev/null 2>&1 || apt_install python3 || die "could not install python3"
  python3 -c "import venv, ensurepip" 2>/dev/null || apt_install python3-venv || die "could not install python3-venv"
  log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV (pip)"
  rm -rf "$VENV"
  mkdir -p "$INFRA_DIR"
  python3 -m venv "$VENV" >&2 || die "python3 -m venv failed"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" >&2 ||
    die "pip install schemathesis==$SCHEMATHESIS_VERSION failed"
fi
echo "$ST"
