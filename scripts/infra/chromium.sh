#!/usr/bin/env bash
# scripts/infra/chromium.sh: makes sure Debian's chromium is installed (the console test drives it
# with playwright-core) and prints its path. Installs it with apt-get when missing (root, or
# passwordless sudo). DOPPEL_CHROMIUM names another browser binary to use instead.
INFRA_NAME=chromium
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ -n "${DOPPEL_CHROMIUM:-}" ]]; then
  [[ -x "$DOPPEL_CHROMIUM" ]] || die "DOPPEL_CHROMIUM=$DOPPEL_CHROMIUM is not an executable"
  echo "$DOPPEL_CHROMIUM"
  exit 0
fi
if ! command -v chromium >/dev/null 2>&1; then
  apt_install chromium || die "could not install chromium with apt-get"
fi
command -v chromium
