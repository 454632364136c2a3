"""Shared fixtures: pycaffe from the build that ./.caffe links to, and the
shared data folder beside the checkout (tests that need it skip without it)."""
from __future__ import annotations

import os
import subprocess
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


def rloss_cli(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "rloss", *map(str, args)], env=child_env(),
                       capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stderr
    return r


# A tiny generated VOC-layout set with scribbles and lists, for the tests that
# train the small net; crops at the small net's 4k + 1.
CROP, TEST_CROP = 41, 65


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from rloss import data, scribbles, synthetic
    root = tmp_path_factory.mktemp("set")
    ids = synthetic.make_dataset(root, 8, size=(44, 56), jitter=8, seed=5)
    for i in ids:
        mask = data.load_label(root / "SegmentationClass" / f"{i}.png")
        data.save_label(root / "scribbles" / f"{i}.png",
                        scribbles.synthesize(mask, 0.05, min_area=32,
                                             rng=scribbles.seed_for(i, 0)))
    data.write_lists(root, root / "list", "scribbles", 0.25, 0, "SegmentationClass")
    return root


def make_exp(dataset: Path, out: Path, *extra) -> Path:
    rloss_cli("prototxt", "--net", "small", "--data-root", dataset, "--num-labels", 3,
              "--crop-size", CROP, "--test-crop-size", TEST_CROP, "--batch-size", 2,
              "--out", out, *extra)
    return out
