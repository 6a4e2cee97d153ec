#!/usr/bin/env bash
# Installs every Debian 12 package hyperc needs to build, test and run its main job.
# Idempotent: packages already present are left alone. Run as root (CI and the dev machines are root).
#   .ci/install-deps.sh            build + test dependencies
# The list below is the single source of truth; deploy/ files that install packages must match it.
set -euo pipefail

HC_BUILD_PACKAGES=(
  g++ cmake ninja-build pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libre2-dev
  libabsl-dev libeigen3-dev libtbb-dev libhwy-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
)
# Python side: evaluation and model extraction only (Debian's /usr/bin/python3, no PyPI).
HC_PY_PACKAGES=(python3 python3-numpy python3-onnx python3-grpcio python3-protobuf)
# Measuring tools used by the tests and the main job.
HC_TOOL_PACKAGES=(time openssl)

all=("${HC_BUILD_PACKAGES[@]}" "${HC_PY_PACKAGES[@]}" "${HC_TOOL_PACKAGES[@]}")
missing=()
for p in "${all[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#all[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"
