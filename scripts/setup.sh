#!/usr/bin/env bash
# Installs the Debian packages the tests need where they are missing: Fashion-MNIST, a font for
# the sample grids, and Chromium for the demo page's browser tests. `npm test` and .ci/run run it.
# Without root it installs nothing and names, in one line, what to install.
set -euo pipefail
read -r -a packages <<< "${CNNLAB_SETUP_PACKAGES:-dataset-fashion-mnist fonts-dejavu-core chromium}"
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "cnnlab: the tests need Debian packages that are not installed: run 'sudo apt-get install ${missing[*]}' (or 'bash .ci/run' as root)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}"
