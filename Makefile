# rloss front door. `make demo` runs the main job, `make test` every test.
# Both first install what is missing on a fresh Debian 12 machine (apt, pip)
# and build Caffe with our layers (cached in ~/.cache/rloss).
# CAFFE_ROOT=/path/to/caffe builds into your own tree.
PYTHON ?= python3
export PYTHON

.PHONY: all build deps demo test bench test-cpp test-python prototxt clean help

all: build

help:
	@echo "make         install dependencies and build Caffe with rloss (cached)"
	@echo "make demo    build, then train pCE / DenseCRF / full masks on synthetic scenes (demo_out/report.md)"
	@echo "make test    build, then run the C++ (gtest) and Python (pytest) tests"
	@echo "make bench   build, then time the DenseCRF loss against the published algorithm and pydensecrf2 (bench_out/)"
	@echo "make prototxt  regenerate prototxt/ from python/rloss/nets.py"
	@echo "make clean   forget this checkout's link to the build (the cache stays)"

deps:
	@bash tools/install_deps.sh

build: deps
	@bash caffe_layers/build_caffe.sh

test: build
	@bash tools/run_tests.sh

demo: build
	@. ./env.sh && rloss demo --out demo_out

bench: build
	@. ./env.sh && rloss bench --out bench_out

# Run one half of the suite against an existing build.
test-cpp:
	@bash tools/run_tests.sh cpp

test-python:
	@bash tools/run_tests.sh python

prototxt: build
	@. ./env.sh && cd python && $(PYTHON) -m rloss.nets > /dev/null && echo "prototxt/ regenerated"

clean:
	rm -rf .caffe build .pytest_cache .mypy_cache
