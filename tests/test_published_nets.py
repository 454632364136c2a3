"""The shipped published-style nets: they are what the generator makes, they
parse, and every train net runs forward/backward (every test net forward) on a
tiny generated VOC-layout dataset."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO

NUM_LABELS = 3
CROP = 65  # 8k + 1, and every scale of ResNet-101 aligns at it


@pytest.fixture(scope="module")
def nets(caffe):
    from rloss import nets as nets_module
    return nets_module


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    """Three small photos-to-be with scribble labels (255 = unlabelled), the
    release's folder and list layout: <exp>/list/{train,val}.txt."""
    root = tmp_path_factory.mktemp("voc")
    data = root / "data"
    (data / "JPEGImages").mkdir(parents=True)
    (data / "pascal_2012_scribble").mkdir()
    rng = np.random.default_rng(0)
    names = []
    for i, (h, w) in enumerate([(50, 70), (80, 60), (66, 66)]):
        yy, xx = np.mgrid[:h, :w]
        inside = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 3) ** 2
        img = np.where(inside[..., None], [200, 60, 40], [30, 120, 200])
        img = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
        # Dense "scribbles": the mask with an unlabelled band at the boundary.
        dist = np.sqrt((yy - h / 2) ** 2 + (xx - w / 2) ** 2) - min(h, w) / 3
        lab = np.where(inside, 1 + i % 2, 0).astype(np.uint8)
        lab[np.abs(dist) < 3] = 255
        Image.fromarray(img).save(data / "JPEGImages" / f"im{i}.jpg")
        Image.fromarray(lab).save(data / "pascal_2012_scribble" / f"im{i}.png")
        names.append(f"im{i}")
    (root / "pascal_scribble" / "list").mkdir(parents=True)
    lines = "".join(f"JPEGImages/{n}.jpg pascal_2012_scribble/{n}.png\n" for n in names)
    (root / "pascal_scribble" / "list" / "train.txt").write_text(lines)
    (root / "pascal_scribble" / "list" / "val.txt").write_text(lines)
    return root


def variables(voc: Path) -> dict:
    return dict(DATA_ROOT=f"{voc / 'data'}/", EXP="pascal_scribble", TRAIN_SET="train",
                TEST_SET="val", NUM_LABELS=NUM_LABELS, BATCH_SIZE=1, CROP_SIZE=CROP,
                TEST_CROP_SIZE=CROP, DENSECRF_LOSS_WEIGHT=1e-8, SOLVER_MODE="CPU")


def load(caffe, nets, voc: Path, net: str, variant: str, phase):
    text = nets.fill((REPO / "prototxt" / net / f"{variant}.prototxt").read_text(),
                     variables(voc), net=net)
    path = voc / f"{net}_{variant}.prototxt"
    path.write_text(text)
    cwd = os.getcwd()
    os.chdir(voc)  # the lists are relative to the experiment folder, as in the release
    try:
        return caffe.Net(str(path), phase)
    finally:
        os.chdir(cwd)


def randomize(net) -> None:
    """He-initialised convolutions and identity BatchNorm statistics, so that
    activations stay finite through an untrained ResNet-101."""
    rng = np.random.default_rng(1)
    for name, layer in zip(net._layer_names, net.layers):
        blobs = layer.blobs
        if layer.type == "Convolution":
            w = blobs[0].data
            fan_in = np.prod(w.shape[1:])
            w[...] = rng.normal(0, math.sqrt(1.0 / fan_in), w.shape)
        elif layer.type == "BatchNorm":
            blobs[0].data[...] = 0
            blobs[1].data[...] = 1
            blobs[2].data[...] = 1


def test_shipped_files_are_generated(nets):
    for net in nets.NETS:
        for variant in nets.VARIANTS:
            shipped = (REPO / "prototxt" / net / f"{variant}.prototxt").read_text()
            assert shipped == nets.render(net, variant), (
                f"prototxt/{net}/{variant}.prototxt differs from the generator; "
                "run `python -m rloss.nets`")


def test_solvers_parse_with_published_schedule(nets, voc):
    from google.protobuf import text_format
    from caffe.proto import caffe_pb2
    for net in nets.NETS:
        if net == "small":  # ours: Adam from scratch, checked below
            continue
        for variant, lr in (("solver", 1e-3), ("solverwithdensecrfloss", 1e-4)):
            text = nets.fill((REPO / "prototxt" / net / f"{variant}.prototxt").read_text(),
                             variables(voc), net=net)
            s = text_format.Parse(text, caffe_pb2.SolverParameter())
            assert s.base_lr == pytest.approx(lr)
            assert (s.lr_policy, s.stepsize, s.max_iter, s.snapshot) == ("step", 3000, 9000, 1000)
            assert s.gamma == pytest.approx(0.1) and s.momentum == pytest.approx(0.9)
            assert s.weight_decay == pytest.approx(5e-4)
            assert s.solver_mode == caffe_pb2.SolverParameter.CPU
            assert s.train_net.endswith(
                ("trainwithdensecrfloss" if "densecrf" in variant else "train") + "_train.prototxt")


def test_small_net_solver(nets, voc):
    from google.protobuf import text_format
    from caffe.proto import caffe_pb2
    sch = nets.SCHEDULES["small"]
    for variant, lr in (("solver", sch.base_lr), ("solverwithdensecrfloss", sch.base_lr2)):
        text = nets.fill((REPO / "prototxt" / "small" / f"{variant}.prototxt").read_text(),
                         variables(voc), net="small")
        s = text_format.Parse(text, caffe_pb2.SolverParameter())
        assert (s.type, s.max_iter, s.stepsize) == ("Adam", sch.max_iter, sch.stepsize)
        assert s.base_lr == pytest.approx(lr) and s.momentum2 == pytest.approx(0.999)


def test_fill_refuses_missing_variables(nets):
    text = (REPO / "prototxt" / "deeplab_largeFOV" / "train.prototxt").read_text()
    with pytest.raises(KeyError, match="DATA_ROOT"):
        nets.fill(text, {"EXP": "e", "TRAIN_SET": "t", "NUM_LABELS": 2}, net="deeplab_largeFOV")


@pytest.mark.parametrize("net", ["deeplab_largeFOV", "deeplab_msc_largeFOV",
                                 "deeplab_vgg16", "resnet-101", "small"])
def test_train_nets_forward_backward(caffe, nets, voc, net):
    for variant in ("train", "trainwithdensecrfloss"):
        n = load(caffe, nets, voc, net, variant, caffe.TRAIN)
        randomize(n)
        out = n.forward()
        n.backward()
        assert n.blobs["data"].data.shape == (1, 3, CROP, CROP)
        side = (CROP - 1) // nets.STRIDES[net] + 1
        assert n.blobs["label_shrink"].data.shape[2:] == (side, side)
        losses = {k: float(v) for k, v in out.items() if "loss" in k}
        assert losses, out.keys()
        for k, v in losses.items():
            # pCE is positive; the DenseCRF loss -S'WS is negative.
            assert math.isfinite(v) and (v < 0 if k == "densecrf_loss" else v > 0), \
                (net, variant, k, v)
        has_crf = "densecrf_loss" in out
        assert has_crf == (variant == "trainwithdensecrfloss")
        acc = out["accuracy"].ravel()
        assert acc.shape == (3,) and np.all((acc >= 0) & (acc <= 1))
        # The gradient reaches the first trainable convolution.
        first = {"deeplab_msc_largeFOV": "data_conv", "resnet-101": "conv1"}.get(net, "conv1_1")
        assert np.abs(n.params[first][0].diff).sum() > 0, (net, variant)


@pytest.mark.parametrize("net", ["deeplab_largeFOV", "deeplab_msc_largeFOV",
                                 "deeplab_vgg16", "resnet-101", "small"])
def test_test_nets_forward(caffe, nets, voc, net):
    n = load(caffe, nets, voc, net, "test", caffe.TEST)
    randomize(n)
    for _ in range(3):
        out = n.forward()
    assert n.blobs["fc8_interp"].data.shape == (1, NUM_LABELS, CROP, CROP)
    assert n.blobs["data_dim"].data.ravel().tolist() in ([50, 65], [65, 60], [65, 65])
    acc = out["accuracy"].ravel()
    assert acc.shape == (3,) and np.all((acc >= 0) & (acc <= 1))


def test_published_style_text_parses(caffe, voc, tmp_path):
    """A net written by hand the way the release writes them: comments,
    `include: { phase: TRAIN }`, Interp pads, loss_param on DenseCRFLoss."""
    net = tmp_path / "published_style.prototxt"
    net.write_text(f"""
# hand-written, release style
name: "toy"
layer {{
  name: "data"  type: "ImageSegData"  top: "data"  top: "label"  top: "data_dim"
  image_data_param {{ root_folder: "{voc / 'data'}"
    source: "{voc / 'pascal_scribble/list/train.txt'}"
    label_type: PIXEL  batch_size: 2  shuffle: true  ignore_label: 255 }}
  transform_param {{ mean_value: 104.008 mean_value: 116.669 mean_value: 122.675
    crop_size: 41  mirror: true  scale_factors: 0.75 scale_factors: 1 }}
  include: {{ phase: TRAIN }}
}}
layer {{ name: "score" type: "Convolution" bottom: "data" top: "score"
  convolution_param {{ num_output: 3 kernel_size: 3 pad: 1
    weight_filler {{ type: "gaussian" std: 0.0001 }} }} }}
layer {{ name: "score_small" type: "Interp" bottom: "score" top: "score_small"
  interp_param {{ shrink_factor: 8 pad_beg: 0 pad_end: 0 }} }}
layer {{ name: "label_shrink" type: "Interp" bottom: "label" top: "label_shrink"
  interp_param {{ shrink_factor: 8 }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "score_small"
  bottom: "label_shrink" top: "loss" loss_param {{ ignore_label: 255 }}
  include: {{ phase: TRAIN }} }}
layer {{ name: "prob" type: "Softmax" bottom: "score" top: "prob" }}
layer {{ bottom: "data" bottom: "prob" propagate_down: false propagate_down: true
  top: "densecrf_loss" name: "densecrf_loss" type: "DenseCRFLoss"
  loss_weight: 1e-8 loss_param {{ ignore_label: 255 }}
  densecrf_loss_param {{ bi_xy_std: 100 bi_rgb_std: 15 }} }}
layer {{ name: "accuracy" type: "SegAccuracy" bottom: "score_small"
  bottom: "label_shrink" top: "accuracy"
  seg_accuracy_param {{ ignore_label: 255 reset: false metric: PixelIOU }} }}
layer {{ name: "silence" type: "Silence" bottom: "data_dim" }}
""")
    n = caffe.Net(str(net), caffe.TRAIN)
    out = n.forward()
    n.backward()
    assert n.blobs["label_shrink"].data.shape == (2, 1, 6, 6)
    assert math.isfinite(float(out["densecrf_loss"])) and float(out["densecrf_loss"]) < 0
    assert float(out["loss"]) == pytest.approx(math.log(3), rel=0.05)


def test_image_seg_data_reads_pixels_as_stored(caffe, tmp_path):
    """A photo tagged 'rotate 180' was turned by OpenCV against its label PNG,
    which has no orientation, with no size change to give it away."""
    from PIL import Image
    from rloss import data
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[:10, :10] = (255, 0, 0)
    label = np.zeros((30, 40), np.uint8)
    label[:10, :10] = 1
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 3  # Orientation: rotate 180
    im.save(tmp_path / "a.jpg", quality=100, exif=exif)
    data.save_label(tmp_path / "a.png", label)
    (tmp_path / "l.txt").write_text("a.jpg a.png\n")
    net = tmp_path / "n.prototxt"
    net.write_text(f"""layer {{ name: "d" type: "ImageSegData" top: "data" top: "label"
  image_data_param {{ source: "{tmp_path / 'l.txt'}" root_folder: "{tmp_path}/"
    batch_size: 1 label_type: PIXEL }} }}""")
    n = caffe.Net(str(net), caffe.TEST)
    n.forward()
    got = n.blobs["data"].data[0].transpose(1, 2, 0)[..., ::-1]  # BGR -> RGB
    stored = np.asarray(Image.open(tmp_path / "a.jpg").convert("RGB"), np.float32)
    assert np.abs(got - stored).max() <= 4  # two JPEG decoders
    assert np.abs(got - stored[::-1, ::-1]).max() > 200
    np.testing.assert_array_equal(n.blobs["label"].data[0, 0], label)
