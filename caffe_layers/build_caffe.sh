#!/usr/bin/env bash
# Build a CPU Caffe with the rloss layers compiled in.
#
# Default: fetch BVLC Caffe (PyPI sdist brocolli-caffe==3.0.0, master 9b89154),
# verify its sha256 before unpacking, and build it with CMake in a cache folder
# keyed by everything that goes into the build; our sources are overlaid file by
# file (only changed files are copied, so only they recompile).
# With CAFFE_ROOT=/path: overlay and merge into that tree and build it with its
# own build system (CMake, or Caffe's Makefile when Makefile.config exists).
# Either way ./.caffe then links to the Caffe root that env.sh and the tests use.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${RLOSS_CACHE:-$HOME/.cache/rloss}
JOBS=${JOBS:-$(nproc)}
PYTHON=${PYTHON:-python3}
SDIST_NAME=brocolli-caffe
SDIST_VERSION=3.0.0
SDIST_SHA256=ad7ba487552f4343df25044a9fa14812a96add48ea2ff993b53bf2dafe8248e2
SDIST_FILE=$SDIST_NAME-$SDIST_VERSION.tar.gz

say() { echo "[rloss build] $*"; }
die() { echo "[rloss build] error: $*" >&2; exit 1; }

PY_EXE=$("$PYTHON" -c 'import sys; print(sys.executable)')
PY_INC=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
PY_LIB=$("$PYTHON" -c 'import sysconfig, os; v = sysconfig.get_config_var; print(os.path.join(v("LIBDIR"), v("LDLIBRARY")))')
NUMPY_VER=$("$PYTHON" -c 'import numpy; print(numpy.__version__)')

# Only our tests go into Caffe's test binary (with Caffe's gtest and test main).
OUR_TESTS=$(cd "$REPO/src/caffe/test" && ls test_*.cpp 2>/dev/null | sed 's/^test_//; s/\.cpp$//' | paste -sd, -)

CXX_FLAGS="-fopenmp -DCV_LOAD_IMAGE_COLOR=cv::IMREAD_COLOR -DCV_LOAD_IMAGE_GRAYSCALE=cv::IMREAD_GRAYSCALE"
CMAKE_OPTS=(
  -DCMAKE_BUILD_TYPE=Release -DCPU_ONLY=ON -DBLAS=Open
  -DUSE_LEVELDB=OFF -DUSE_LMDB=OFF -DBUILD_docs=OFF -DBUILD_matlab=OFF
  -Dpython_version=3 -DPYTHON_EXECUTABLE="$PY_EXE"
  -DPYTHON_INCLUDE_DIR="$PY_INC" -DPYTHON_LIBRARY="$PY_LIB"
  -DCMAKE_CXX_FLAGS="$CXX_FLAGS"
  -DCMAKE_EXE_LINKER_FLAGS=-fopenmp -DCMAKE_SHARED_LINKER_FLAGS=-fopenmp
  # libpng, at the end of every link line: ImageSegData reads palette PNG
  # labels as indices (OpenCV cannot).
  -DCMAKE_CXX_STANDARD_LIBRARIES=-lpng
)

fetch_sdist() {  # -> path of the verified tarball
  local dir="$CACHE/sdist" file="$CACHE/sdist/$SDIST_FILE"
  mkdir -p "$dir"
  if [ ! -f "$file" ]; then
    say "fetching $SDIST_NAME==$SDIST_VERSION from PyPI" >&2
    local tmp; tmp=$(mktemp -d)
    printf '%s==%s --hash=sha256:%s\n' "$SDIST_NAME" "$SDIST_VERSION" "$SDIST_SHA256" > "$tmp/req.txt"
    # --require-hashes makes pip check the hash before it unpacks anything.
    "$PYTHON" -m pip download -q --no-deps --no-binary :all: --require-hashes \
      -r "$tmp/req.txt" -d "$tmp" > "$tmp/pip.log" 2>&1 \
      || { cat "$tmp/pip.log" >&2; die "pip could not fetch $SDIST_NAME==$SDIST_VERSION, or its sha256 is not $SDIST_SHA256"; }
    mv "$tmp/$SDIST_FILE" "$file"
    rm -rf "$tmp"
  fi
  local got; got=$(sha256sum "$file" | cut -d' ' -f1)
  [ "$got" = "$SDIST_SHA256" ] || die "$file has sha256 $got, expected $SDIST_SHA256; delete it and run again"
  echo "$file"
}

overlay() {  # copy our C++ into a Caffe tree, changed files only; drop files we no longer ship
  local root=$1 manifest=$1/.rloss-overlay f
  local new; new=$(cd "$REPO" && find include/caffe src/caffe -type f \( -name '*.hpp' -o -name '*.cpp' -o -name '*.cu' \) | sort)
  touch "$manifest"
  comm -23 "$manifest" <(echo "$new") | while read -r f; do rm -f "$root/$f"; done
  for f in $new; do  # check all before touching anything
    if [ -e "$root/$f" ] && ! grep -qFx "$f" "$manifest" && ! cmp -s "$REPO/$f" "$root/$f"; then
      die "$root/$f already exists and differs from rloss's $f (an older copy of this layer?); remove it or build into a clean tree"
    fi
  done
  for f in $new; do
    cmp -s "$REPO/$f" "$root/$f" 2>/dev/null || install -D -m 644 "$REPO/$f" "$root/$f"
  done
  echo "$new" > "$manifest"
}

build_cached() {
  local tarball; tarball=$(fetch_sdist)
  local key_text key root
  # Our own sources are not in the key: they are overlaid and rebuilt incrementally.
  key_text=$(printf '%s\n' "$SDIST_SHA256" "${CMAKE_OPTS[@]}" "numpy $NUMPY_VER" "$(c++ --version | head -1)")
  key=$(echo "$key_text" | sha256sum | cut -c1-12)
  root="$CACHE/caffe-$key"
  if [ ! -f "$root/.rloss-unpacked" ]; then
    say "unpacking Caffe into $root"
    rm -rf "$root" && mkdir -p "$root"
    tar -xzf "$tarball" -C "$root" --strip-components=1 --exclude="*/.git"
    mkdir -p "$root/examples" && : > "$root/examples/CMakeLists.txt"  # CMake expects the folder
    cp "$root/src/caffe/proto/caffe.proto" "$root/src/caffe/proto/caffe.proto.bvlc"
    echo "$key_text" > "$root/.rloss-key"
    touch "$root/.rloss-unpacked"
  fi
  overlay "$root"
  "$PYTHON" "$REPO/caffe_layers/merge_proto.py" "$root/src/caffe/proto/caffe.proto" \
    --base "$root/src/caffe/proto/caffe.proto.bvlc"
  mkdir -p "$root/build"
  # Re-configure when the set of source files changes (Caffe globs them).
  local files_sig; files_sig=$(cat "$root/.rloss-overlay" | sha256sum | cut -c1-16)
  if [ ! -f "$root/build/CMakeCache.txt" ] || [ "$(cat "$root/build/.rloss-files" 2>/dev/null)" != "$files_sig" ]; then
    say "configuring (CMake)"
    (cd "$root/build" && cmake .. "${CMAKE_OPTS[@]}" -DBUILD_only_tests="$OUR_TESTS" > cmake.log 2>&1) || { tail -30 "$root/build/cmake.log"; die "CMake failed; log: $root/build/cmake.log"; }
    echo "$files_sig" > "$root/build/.rloss-files"
  fi
  say "compiling (make -j$JOBS; log: $root/build/make.log)"
  (cd "$root/build" && make -j"$JOBS" all test.testbin > make.log 2>&1) || { grep -B2 -A8 -m5 'error' "$root/build/make.log" | head -60; die "build failed; log: $root/build/make.log"; }
  ln -sfn "$root" "$REPO/.caffe"
  say "Caffe ready: $root"
}

build_user_tree() {
  local root; root=$(cd "$CAFFE_ROOT" && pwd) || die "CAFFE_ROOT=$CAFFE_ROOT is not a folder"
  [ -f "$root/src/caffe/proto/caffe.proto" ] || die "$root has no src/caffe/proto/caffe.proto: CAFFE_ROOT must be the root of a BVLC-derived Caffe tree"
  # Refuse a Makefile.config that cannot link us before touching the tree.
  if [ -f "$root/Makefile.config" ]; then
    grep -Eq '^[[:space:]]*LIBRARIES.*png' "$root/Makefile.config" || \
      die "ImageSegData reads label PNGs with libpng: add 'LIBRARIES += png' to $root/Makefile.config"
  fi
  overlay "$root"
  "$PYTHON" "$REPO/caffe_layers/merge_proto.py" "$root/src/caffe/proto/caffe.proto"
  if [ -f "$root/Makefile.config" ]; then
    grep -q -- '-fopenmp' "$root/Makefile.config" || \
      say "note: Makefile.config has no -fopenmp, so the layers run on one core; add 'CXXFLAGS += -fopenmp' and 'LINKFLAGS += -fopenmp' to it"
    say "building $root with its Makefile"
    (cd "$root" && make -j"$JOBS" all pycaffe test) || die "Caffe's Makefile build failed in $root"
  else
    mkdir -p "$root/build"
    (cd "$root/build" && cmake .. "${CMAKE_OPTS[@]}" -DBUILD_only_tests="$OUR_TESTS" && make -j"$JOBS" all test.testbin) || die "CMake build failed in $root/build"
  fi
  ln -sfn "$root" "$REPO/.caffe"
  say "Caffe ready: $root"
}

if [ -n "${CAFFE_ROOT:-}" ]; then build_user_tree; else build_cached; fi
