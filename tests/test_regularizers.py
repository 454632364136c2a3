"""NormalizedCutLoss and SizeLoss through pycaffe: against numpy statements
of their definitions, and as phase-2 choices of `rloss prototxt`."""
from __future__ import annotations

import math

import numpy as np
import pytest
from google.protobuf import text_format

from conftest import make_exp


def layer_net(caffe, tmp_path, shape_img, shape_prob, make_layer):
    from caffe import layers as L
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=list(shape_img)))
    n.prob = L.Input(shape=dict(dim=list(shape_prob)))
    n.loss = make_layer(n)
    proto = n.to_proto()
    proto.force_backward = True
    path = tmp_path / "net.prototxt"
    path.write_text(str(proto))
    return caffe.Net(str(path), caffe.TRAIN)


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_ncut_against_exact_gaussian(caffe, tmp_path):
    """The lattice approximates the Gaussian with a gain that cancels in the
    NCut ratio; what is left is its shape error (a few percent)."""
    from caffe import layers as L
    from rloss.densecrf import normalized_cut_loss
    rng = np.random.default_rng(0)
    h, w, k = 12, 14, 3
    yy, xx = np.mgrid[:h, :w]
    img = np.where(((yy - 6) ** 2 + (xx - 7) ** 2 < 20)[None], [[[200]], [[60]], [[40]]],
                   [[[30]], [[120]], [[200]]]).astype(np.float64)
    img = np.clip(img + rng.normal(0, 8, img.shape), 1, 255)[None]
    prob = softmax(rng.normal(0, 1.5, (1, k, h, w)))
    net = layer_net(caffe, tmp_path, img.shape, prob.shape, lambda n: L.NormalizedCutLoss(
        n.data, n.prob, propagate_down=[False, True], loss_weight=1,
        normalized_cut_loss_param=dict(bi_xy_std=5, bi_rgb_std=30)))
    net.blobs["data"].data[...] = img
    net.blobs["prob"].data[...] = prob
    loss = float(net.forward()["loss"])
    net.backward()
    grad = net.blobs["prob"].diff.astype(np.float64)
    ref, ref_grad = normalized_cut_loss(img, prob, 5, 30)
    assert 0 < ref < k
    assert loss == pytest.approx(ref, rel=0.05)
    cos = (grad * ref_grad).sum() / np.linalg.norm(grad) / np.linalg.norm(ref_grad)
    assert cos > 0.97


def test_size_loss_against_numpy(caffe, tmp_path):
    from caffe import layers as L
    rng = np.random.default_rng(1)
    prob = softmax(rng.normal(0, 1, (2, 3, 5, 6)))
    lo, hi = [0.1, 0.5, 0.0], [0.3, 1.0, 0.2]
    net = layer_net(caffe, tmp_path, (1, 1, 1, 1), prob.shape, lambda n: L.SizeLoss(
        n.prob, loss_weight=1, size_loss_param=dict(lower_bound=lo, upper_bound=hi,
                                                    relative=True)))
    net.blobs["prob"].data[...] = prob
    loss = float(net.forward()["loss"])
    net.backward()
    s = prob.sum((2, 3)) / 30
    excess = np.maximum(s - hi, 0) - np.maximum(np.array(lo) - s, 0)
    assert loss == pytest.approx((excess ** 2).sum() / 2, rel=1e-5)
    assert loss > 0
    np.testing.assert_allclose(net.blobs["prob"].diff,
                               np.broadcast_to((2 * excess / 30 / 2)[..., None, None],
                                               prob.shape), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("reg,layer_type,top", [("ncut", "NormalizedCutLoss", "ncut_loss"),
                                                ("size", "SizeLoss", "size_loss"),
                                                ("none", None, None)])
def test_prototxt_regularizer(caffe, dataset, tmp_path, reg, layer_type, top):
    from caffe.proto import caffe_pb2
    extra = ["--size-lower", "0.5", "0.1", "0", "--size-upper", "1", "0.4", "0.3"] \
        if reg == "size" else []
    exp = make_exp(dataset, tmp_path / reg, "--regularizer", reg, "--densecrf-weight", 0.5,
                   *extra)
    path = exp / "config" / "trainwithdensecrfloss.prototxt"
    n = text_format.Parse(path.read_text(), caffe_pb2.NetParameter())
    types = [x.type for x in n.layer]
    assert "DenseCRFLoss" not in types
    if layer_type is None:
        assert types.count("SoftmaxWithLoss") == 1 and len(types) == len(
            text_format.Parse((exp / "config" / "train.prototxt").read_text(),
                              caffe_pb2.NetParameter()).layer)
        return
    (layer,) = [x for x in n.layer if x.type == layer_type]
    assert layer.loss_weight[0] == pytest.approx(0.5)
    if reg == "size":
        p = layer.size_loss_param
        assert list(p.lower_bound) == pytest.approx([0.5, 0.1, 0]) and p.relative
    else:
        assert list(layer.propagate_down) == [False, True]
    net = caffe.Net(str(path), caffe.TRAIN)
    out = net.forward()
    net.backward()
    assert math.isfinite(float(out[top])) and float(out[top]) >= 0
    assert np.abs(net.params["conv1_1"][0].diff).sum() > 0
