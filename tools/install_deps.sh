#!/usr/bin/env bash
# Install what building and testing rloss needs, idempotently: Debian packages
# (only those missing) and the Python packages of requirements.txt (only when
# the file changed since the last successful install or an import fails).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
CACHE=${RLOSS_CACHE:-$HOME/.cache/rloss}

APT_PACKAGES=(
  g++ make cmake pkg-config
  libboost-system-dev libboost-thread-dev libboost-filesystem-dev libboost-python-dev
  libprotobuf-dev protobuf-compiler libgoogle-glog-dev libgflags-dev
  libhdf5-dev libopenblas-dev libopencv-dev libpng-dev
  clang libomp-dev  # the tests compile our C++ with clang too
)
if [ "$(uname -m)" = x86_64 ]; then  # and run the lattice's tests on aarch64
  APT_PACKAGES+=(g++-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
fi
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[rloss deps] installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" > /tmp/rloss-apt.log 2>&1 \
    || { tail -20 /tmp/rloss-apt.log; echo "[rloss deps] apt-get install failed (log: /tmp/rloss-apt.log)" >&2; exit 1; }
fi

mkdir -p "$CACHE"
stamp="$CACHE/pip-$( (cat "$REPO/requirements.txt"; "$PYTHON" -c 'import sys; print(sys.executable)') | sha256sum | cut -c1-12)"
if [ -f "$stamp" ] && "$PYTHON" -c 'import numpy, google.protobuf, skimage, scipy, PIL, six, pytest, pydensecrf, matplotlib, tqdm, flake8, mypy' 2>/dev/null; then
  exit 0
fi
echo "[rloss deps] installing Python packages from requirements.txt"
"$PYTHON" -m pip install -q -r "$REPO/requirements.txt" > "$CACHE/pip.log" 2>&1 \
  || { tail -20 "$CACHE/pip.log"; echo "[rloss deps] pip install failed (log: $CACHE/pip.log)" >&2; exit 1; }
touch "$stamp"
