"""caffe_layers/merge_proto.py: idempotent, accepts identical definitions,
names what collides."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from conftest import CAFFE_ROOT, REPO

sys.path.insert(0, str(REPO / "caffe_layers"))
import merge_proto  # noqa: E402

FRAGMENT = (REPO / "caffe_layers" / "rloss.proto").read_text()

MINI = """syntax = "proto2";
package caffe;
// A cut-down caffe.proto.
message LayerParameter {
  optional string name = 1; // the layer name
  optional string type = 2;
  optional ConvolutionParameter convolution_param = 106;
}
message ConvolutionParameter {
  enum Engine {
    DEFAULT = 0;
  }
  optional uint32 num_output = 1;
}
"""


def test_merge_adds_fields_and_messages_once():
    merged, added = merge_proto.merge(MINI, FRAGMENT)
    assert "LayerParameter.densecrf_loss_param" in added
    assert "message DenseCRFLossParameter" in added
    assert "optional DenseCRFLossParameter densecrf_loss_param = 152;" in merged
    assert merged.count("message DenseCRFLossParameter") == 1
    again, added_again = merge_proto.merge(merged, FRAGMENT)
    assert again == merged and added_again == []


def test_identical_definitions_in_a_deeplab_style_tree_are_kept():
    # A fork that already has the published layer, written differently.
    fork = MINI.replace("  optional ConvolutionParameter convolution_param = 106;\n",
                        "  optional ConvolutionParameter convolution_param = 106;\n"
                        "  optional DenseCRFLossParameter densecrf_loss_param=152;\n") + """
message DenseCRFLossParameter {
  optional float bi_xy_std = 1 [default=15];  // spatial
  optional float bi_rgb_std = 2 [ default = 40 ];
}
"""
    merged, added = merge_proto.merge(fork, FRAGMENT)
    assert "DenseCRFLossParameter.scale_factor" in added
    assert not any(a.startswith("DenseCRFLossParameter.bi_") for a in added)
    assert "LayerParameter.densecrf_loss_param" not in added
    assert merged.count("densecrf_loss_param") == 1


def test_deeplab_image_data_fields_written_differently_are_kept():
    fork = MINI + """
message ImageDataParameter {
  optional string source = 1;
  optional int32 ignore_label = 15 [default = 255];
  enum LabelType { NONE = 0; IMAGE = 1; PIXEL = 2; }
  optional LabelType label_type = 16 [default = IMAGE];
}
"""
    merged, added = merge_proto.merge(fork, FRAGMENT)
    assert not any(a.startswith("ImageDataParameter") for a in added)
    assert merged.count("enum LabelType") == 1


def test_deeplab_interp_param_id_is_refused_with_both_definitions():
    # DeepLab-v2 numbers interp_param 143, which BVLC gives to input_param.
    fork = MINI.replace("convolution_param = 106;",
                        "convolution_param = 106;\n"
                        "  optional InterpParameter interp_param = 143;")
    with pytest.raises(merge_proto.MergeError,
                       match=re.escape("LayerParameter.interp_param already exists")):
        merge_proto.merge(fork, FRAGMENT)


@pytest.mark.parametrize("change,message", [
    (("convolution_param = 106;", "convolution_param = 106;\n  optional float other = 152;"),
     "field number 152 of LayerParameter is taken by 'optional float other=152'"),
    (("convolution_param = 106;",
      "convolution_param = 106;\n  optional DenseCRFLossParameter densecrf_loss_param = 153;"),
     "LayerParameter.densecrf_loss_param already exists in caffe.proto"),
])
def test_collisions_are_named(change, message):
    with pytest.raises(merge_proto.MergeError, match=re.escape(message)):
        merge_proto.merge(MINI.replace(*change), FRAGMENT)


def test_cli_is_quiet_on_second_run_and_output_compiles(tmp_path):
    target = tmp_path / "caffe.proto"
    bvlc = CAFFE_ROOT / "src" / "caffe" / "proto" / "caffe.proto.bvlc"
    if bvlc.exists():
        shutil.copy(bvlc, target)
    else:
        target.write_text(MINI)
    script = REPO / "caffe_layers" / "merge_proto.py"
    first = subprocess.run([sys.executable, script, target], capture_output=True, text=True)
    assert first.returncode == 0 and "added" in first.stdout
    text = target.read_text()
    second = subprocess.run([sys.executable, script, target], capture_output=True, text=True)
    assert second.returncode == 0 and second.stdout == "" and target.read_text() == text
    protoc = shutil.which("protoc")
    assert protoc, "protoc is installed by `make deps`"
    out = subprocess.run([protoc, f"--proto_path={tmp_path}", f"--cpp_out={tmp_path}",
                          str(target)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_cli_reports_a_missing_file(tmp_path):
    script = REPO / "caffe_layers" / "merge_proto.py"
    res = subprocess.run([sys.executable, script, tmp_path / "nope.proto"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "no such file" in res.stderr
