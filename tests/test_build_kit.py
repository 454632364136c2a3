"""caffe_layers/build_caffe.sh refuses what it must refuse, before compiling."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import REPO

SCRIPT = REPO / "caffe_layers" / "build_caffe.sh"


def run_build(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full = dict(os.environ, RLOSS_CACHE=str(tmp_path / "cache"), **env)
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=full,
                          timeout=120)


def test_a_tampered_sdist_is_refused(tmp_path):
    sdist = tmp_path / "cache" / "sdist" / "brocolli-caffe-3.0.0.tar.gz"
    sdist.parent.mkdir(parents=True)
    sdist.write_bytes(b"not the BVLC source")
    res = run_build(tmp_path)
    assert res.returncode == 1
    assert "expected ad7ba487552f4343df25044a9fa14812a96add48ea2ff993b53bf2dafe8248e2" in res.stderr
    assert "delete it and run again" in res.stderr
    assert not list((tmp_path / "cache").glob("caffe-*")), "nothing may be unpacked"


def fake_tree(tmp_path: Path, proto_extra: str = "") -> Path:
    root = tmp_path / "caffe"
    (root / "src" / "caffe" / "proto").mkdir(parents=True)
    (root / "src" / "caffe" / "proto" / "caffe.proto").write_text(
        'syntax = "proto2";\npackage caffe;\nmessage LayerParameter {\n'
        f'  optional string name = 1;\n{proto_extra}}}\n')
    return root


def test_a_different_copy_of_our_layer_in_the_users_tree_is_named(tmp_path):
    root = fake_tree(tmp_path)
    clash = root / "include" / "caffe" / "layers" / "densecrf_loss_layer.hpp"
    clash.parent.mkdir(parents=True)
    clash.write_text("// the published layer\n")
    res = run_build(tmp_path, CAFFE_ROOT=str(root))
    assert res.returncode == 1
    assert f"{clash} already exists and differs from rloss's" in res.stderr
    assert clash.read_text() == "// the published layer\n"
    assert not (root / "src" / "caffe" / "layers").exists(), "nothing may be copied"


def test_a_clashing_proto_field_in_the_users_tree_is_named(tmp_path):
    root = fake_tree(tmp_path, "  optional float old_field = 152;\n")
    res = run_build(tmp_path, CAFFE_ROOT=str(root))
    assert res.returncode == 1
    assert "field number 152 of LayerParameter is taken by 'optional float old_field=152'" \
        in res.stderr


def test_a_missing_user_tree_is_named(tmp_path):
    res = run_build(tmp_path, CAFFE_ROOT=str(tmp_path / "nowhere"))
    assert res.returncode != 0
    assert "nowhere" in res.stderr


def test_a_makefile_config_without_libpng_is_refused_before_copying(tmp_path):
    root = fake_tree(tmp_path)
    (root / "Makefile.config").write_text("CPU_ONLY := 1\nCXXFLAGS += -fopenmp\n")
    res = run_build(tmp_path, CAFFE_ROOT=str(root))
    assert res.returncode == 1
    assert "add 'LIBRARIES += png'" in res.stderr
    assert not (root / "src" / "caffe" / "layers").exists(), "nothing may be copied"
