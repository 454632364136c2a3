"""Shared fixtures: pycaffe from the build that ./.caffe links to, and the
shared data folder beside the checkout (tests that need it skip without it)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CAFFE_ROOT = REPO / ".caffe"
SHARED = Path(os.environ.get("RLOSS_SHARED", REPO.parent / "shared"))

os.environ.setdefault("GLOG_minloglevel", "2")  # keep pycaffe's glog quiet
for p in (CAFFE_ROOT / "python", REPO / "python"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


@pytest.fixture(scope="session")
def caffe():
    if not (CAFFE_ROOT / "python" / "caffe" / "_caffe.so").exists():
        pytest.fail("pycaffe is not built: run `make` (or `make test`) first")
    import caffe as caffe_module
    caffe_module.set_mode_cpu()
    return caffe_module


@pytest.fixture(scope="session")
def caffe_bin() -> Path:
    path = CAFFE_ROOT / "build" / "tools" / "caffe"
    if not path.exists():
        path = CAFFE_ROOT / "build" / "tools" / "caffe.bin"
    assert path.exists(), "the caffe tool is not built: run `make` first"
    return path


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    d = SHARED / "reference" / "densecrf_loss"
    if not d.is_dir():
        pytest.skip(f"{d} is absent: the published reference values live in ../shared")
    return d


def child_env() -> dict[str, str]:
    """Environment for a child process that imports pycaffe or runs caffe."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(CAFFE_ROOT / "python"), str(REPO / "python"), env.get("PYTHONPATH", "")])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        [str(CAFFE_ROOT / "build" / "lib"), env.get("LD_LIBRARY_PATH", "")])
    env["GLOG_minloglevel"] = "0"
    env["GLOG_logtostderr"] = "1"
    return env
