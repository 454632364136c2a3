#!/usr/bin/env bash
# Lint the C++, compile it with clang as well, run the lattice's tests on
# aarch64 (under qemu) and all its tests (our gtest cases in Caffe's test
# binary), then the Python static checks and tests (pytest), against the
# build that ./.caffe links to. Argument: cpp, python or nothing for both.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
PYTHON=${PYTHON:-python3}
what=${1:-all}
[ -d .caffe/build ] || { echo "no Caffe build: run 'make' first" >&2; exit 1; }
source ./env.sh
export RLOSS_SHARED=${RLOSS_SHARED:-$(cd "$REPO/.." && pwd)/shared}

if [ "$what" != python ]; then
  # The published reference values, as .npy files the C++ test can read.
  if [ -d "$RLOSS_SHARED/reference/densecrf_loss" ]; then
    export RLOSS_REFERENCE_DIR="$REPO/build/reference/densecrf_loss"
    "$PYTHON" tools/export_reference.py "$RLOSS_SHARED/reference/densecrf_loss" "$RLOSS_REFERENCE_DIR"
  else
    echo "note: $RLOSS_SHARED/reference/densecrf_loss is absent: the C++ reference test will skip"
  fi
  # Caffe's own linter (what its `make lint` runs), from the fetched source.
  echo "== C++ lint (Caffe's scripts/cpp_lint.py)"
  lint_ok=1
  lint=$("$PYTHON" -W ignore::DeprecationWarning .caffe/scripts/cpp_lint.py \
    $(find include/caffe src/caffe tools -name '*.hpp' -o -name '*.cpp' | sort) 2>&1) || lint_ok=0
  grep -v '^Done processing' <<< "$lint" || true
  [ "$lint_ok" = 1 ] || { echo "C++ lint errors above" >&2; exit 1; }
  # A Caffe built by clang compiles this C++ too. The lattice is compiled
  # whole: clang rejects some of its vector code only when generating it;
  # and with and without OpenMP, as clang 14 once rejected its inline
  # assembly without OpenMP only.
  command -v clang++ > /dev/null || { echo "clang++ is missing: run 'make deps'" >&2; exit 1; }
  echo "== C++ with clang ($(clang++ --version | head -1))"
  caffe=$(readlink -f .caffe)
  includes=(-DCPU_ONLY -Iinclude -I"$caffe/include" -I"$caffe/src"
            -I"$caffe/build/include" $(pkg-config --cflags opencv4))
  clang_flags=(-fopenmp "${includes[@]}")
  clang++ "${clang_flags[@]}" -O2 -c src/caffe/util/permutohedral.cpp -o /dev/null
  clang++ "${includes[@]}" -Wno-unknown-pragmas -O2 -c src/caffe/util/permutohedral.cpp -o /dev/null
  find src/caffe tools/bench -name '*.cpp' ! -name permutohedral.cpp -print0 | sort -z |
    xargs -0 -P2 -n1 clang++ "${clang_flags[@]}" -fsyntax-only
  # The lattice's portable path is what aarch64 runs (NEON, no AVX2 code);
  # no arm machine is at hand, so its own tests (they need only gtest) are
  # cross-compiled as the Release build compiles them and run under qemu.
  if [ "$(uname -m)" = x86_64 ]; then
    command -v aarch64-linux-gnu-g++ > /dev/null && command -v qemu-aarch64 > /dev/null ||
      { echo "the aarch64 cross compiler or qemu-user is missing: run 'make deps'" >&2; exit 1; }
    echo "== The lattice's tests on aarch64 ($(aarch64-linux-gnu-g++ --version | head -1), qemu-aarch64)"
    arm=build/aarch64
    mkdir -p "$arm"
    arm_flags=(-O3 -DNDEBUG -fopenmp -Iinclude -I"$caffe/src")
    [ "$arm/gtest.o" -nt "$caffe/src/gtest/gtest-all.cpp" ] ||  # the slowest file: kept
      aarch64-linux-gnu-g++ "${arm_flags[@]}" -c "$caffe/src/gtest/gtest-all.cpp" -o "$arm/gtest.o"
    aarch64-linux-gnu-g++ "${arm_flags[@]}" src/caffe/util/permutohedral.cpp \
      src/caffe/test/test_permutohedral.cpp tools/lattice_test_main.cpp "$arm/gtest.o" \
      -lpthread -o "$arm/lattice_tests"
    QEMU_LD_PREFIX=/usr/aarch64-linux-gnu qemu-aarch64 "$arm/lattice_tests" --gtest_color=no 2>&1 |
      grep -v '^\[       OK \]\|^\[ RUN      \]' || exit 1
  fi
  testbin=$(find -L .caffe/build -name test.testbin -type f | head -1)
  [ -n "$testbin" ] || { echo "no test binary under .caffe/build" >&2; exit 1; }
  echo "== C++ tests ($testbin)"
  "$testbin" --gtest_filter='-*GPU*' --gtest_color=no 2>&1 | grep -v '^\[       OK \]\|^\[ RUN      \]' || exit 1
fi
if [ "$what" != cpp ]; then
  # Unused imports, undefined names, style (.flake8) and type hints (pyproject.toml).
  echo "== Static checks (flake8, mypy)"
  "$PYTHON" -m flake8
  "$PYTHON" -m mypy
  echo "== Python tests"
  "$PYTHON" -m pytest -q tests
fi
