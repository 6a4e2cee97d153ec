#!/usr/bin/env bash
# Installs every Debian 12 package hyperc needs to build, test and run its main job.
# Idempotent: packages already present are left alone. Run as root (CI and the dev machines are root).
#   .ci/install-deps.sh            build + test dependencies
#   .ci/install-deps.sh --fuzz     the same plus clang and libFuzzer (tests/fuzz/README.md)
#   .ci/install-deps.sh --eval     the same plus the end-to-end quality checks of ../shared/eval
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
HC_TOOL_PACKAGES=(time openssl bc)
# Deployment tests (tests/deploy, label "deploy"): a real Prometheus server, Compose v1 for the
# offline `docker-compose config` check, single-host Slurm + munge, YAML for the k8s manifests.
HC_DEPLOY_PACKAGES=(
  prometheus docker-compose slurmctld slurmd slurm-client munge python3-yaml
)
# What the built binaries need at run time, and nothing else: the runtime stage of
# deploy/Dockerfile installs exactly this list (tests/deploy/test_dockerfile.py checks it against
# `ldd` of the binaries). python3 + python3-grpcio run deploy/healthcheck.py.
HC_RUNTIME_PACKAGES=(
  libgrpc++1.51 libgrpc29 libprotobuf32 libre2-9 libtbb12 libprometheus-cpp-core1.0
  libprometheus-cpp-pull1.0 libabsl20220623 python3 python3-grpcio
)
# Optional, only with --fuzz: clang 14 with libFuzzer and the sanitizer runtimes, for the
# libFuzzer build of tests/fuzz (-DHC_FUZZ=ON). Normal CI builds with g++ and skips these.
HC_FUZZ_PACKAGES=(clang-14 libclang-rt-14-dev)
# Optional, only with --eval: what ../shared/eval's scripts need (OCR CER, byte-LM bits per
# byte, Fashion-MNIST accuracy); node/npm come with the machine, and the npm packages the
# scripts fetch themselves into their cache.
HC_EVAL_PACKAGES=(python3-torch python3-pil fonts-dejavu-core libopenblas0-pthread
                  dataset-fashion-mnist)

all=("${HC_BUILD_PACKAGES[@]}" "${HC_PY_PACKAGES[@]}" "${HC_TOOL_PACKAGES[@]}"
     "${HC_DEPLOY_PACKAGES[@]}" "${HC_RUNTIME_PACKAGES[@]}")
case "${1:-}" in
  --fuzz) all+=("${HC_FUZZ_PACKAGES[@]}") ;;
  --eval) all+=("${HC_EVAL_PACKAGES[@]}") ;;
esac
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
