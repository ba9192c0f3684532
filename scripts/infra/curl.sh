#!/usr/bin/env bash
# scripts/infra/curl.sh: makes sure curl is installed (the README's curl examples are run as
# written by test/readme) and prints its path. Installs Debian's curl with apt-get when missing
# (root, or passwordless sudo).
INFRA_NAME=curl
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if ! command -v curl >/dev/null 2>&1; then
  apt_install curl || die "could not install curl with apt-get"
fi
command -v curl
