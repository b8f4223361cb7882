#!/usr/bin/env bash
# Installs the Debian packages rlaifd needs to build, test and run.
# Idempotent: when every package is already installed it does nothing (no apt
# update, no network). Run as root (CI and dev machines are root) or via sudo.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libopenblas0-pthread
  clang-14 libclang-rt-14-dev llvm-14  # fuzzing (libFuzzer) + symbolized sanitizer reports
  librocksdb-dev libcpp-httplib-dev nlohmann-json3-dev libspdlog-dev
  libgtest-dev libgmock-dev libssl-dev
  libsimdjson-dev
  curl python3 openssl prometheus chromium logrotate time util-linux
  systemd yamllint python3-yaml python3-kubernetes
  python3-torch
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "deps.sh: installing: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
