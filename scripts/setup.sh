#!/usr/bin/env bash
# Installs the Debian packages the tests need where they are missing: Fashion-MNIST, a font for
# the sample grids, Chromium for the demo page's browser tests, redis-server for the queue's
# tests (each test starts its own on a free loopback port), and Mesa 25's lavapipe (Vulkan on
# the CPU: a WebGPU adapter for onnxruntime's WebGPU EP, which Mesa 22 from bookworm does not
# give; on bookworm it comes from bookworm-backports). `npm test` and .ci/run run it.
# Without root it installs nothing and names, in one line, what to install.
set -euo pipefail
read -r -a packages <<< "${CNNLAB_SETUP_PACKAGES:-dataset-fashion-mnist fonts-dejavu-core chromium redis-server}"
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
lavapipe=()
if [ -z "${CNNLAB_SETUP_PACKAGES+set}" ]; then
  mesa=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
  { [ -n "$mesa" ] && dpkg --compare-versions "$mesa" ge 25; } || lavapipe=(mesa-vulkan-drivers libvulkan1)
fi
[ ${#missing[@]} -eq 0 ] && [ ${#lavapipe[@]} -eq 0 ] && exit 0
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
backports=()
[ "$codename" = bookworm ] && backports=(-t bookworm-backports)
if [ "$(id -u)" -ne 0 ]; then
  todo=()
  [ ${#missing[@]} -gt 0 ] && todo+=("'sudo apt-get install ${missing[*]}'")
  [ ${#lavapipe[@]} -gt 0 ] && todo+=("'sudo apt-get install ${backports[*]}${backports:+ }${lavapipe[*]}'${backports:+ (with bookworm-backports in your apt sources)}")
  echo "cnnlab: the tests need Debian packages that are not installed: run ${todo[*]} (or 'bash .ci/run' as root)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if [ ${#backports[@]} -gt 0 ] && [ ${#lavapipe[@]} -gt 0 ] && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/cnnlab-backports.list
fi
apt-get update -qq
[ ${#missing[@]} -eq 0 ] || apt-get install -y -qq "${missing[@]}"
[ ${#lavapipe[@]} -eq 0 ] || apt-get install -y -qq "${backports[@]}" "${lavapipe[@]}"
