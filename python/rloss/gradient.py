"""The DenseCRF loss and its gradient for one image, through the C++ layer
itself (not a restatement), and a trained net's probabilities for one image.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Tuple

import numpy as np

from .data import Feed, crop_of, feed_of


def _net_from_proto(proto: Any, phase: int) -> Any:
    """A caffe.Net from a NetParameter (through a temporary file, as pycaffe needs)."""
    import caffe
    fd, path = tempfile.mkstemp(suffix=".prototxt", prefix="rloss_")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(str(proto))
        return caffe.Net(path, phase)
    finally:
        os.unlink(path)


def densecrf_layer(image: np.ndarray, prob: np.ndarray, bi_xy_std: float, bi_rgb_std: float,
                   scale_factor: float = 1.0) -> Tuple[float, np.ndarray]:
    """(loss, dloss/dprob) of the DenseCRFLoss layer, loss weight 1, for an
    image C x H x W (as the net sees it: BGR minus the mean) and
    probabilities K x H x W."""
    import caffe
    from caffe import layers as L

    if image.ndim != 3 or prob.ndim != 3 or image.shape[1:] != prob.shape[1:]:
        raise ValueError(f"image {image.shape} and probabilities {prob.shape} must be "
                         "C x H x W and K x H x W of the same size")
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, *image.shape]))
    n.prob = L.Input(shape=dict(dim=[1, *prob.shape]))
    param = dict(bi_xy_std=bi_xy_std, bi_rgb_std=bi_rgb_std)
    if scale_factor != 1:
        param["scale_factor"] = scale_factor
    n.loss = L.DenseCRFLoss(n.data, n.prob, propagate_down=[False, True], loss_weight=1,
                            densecrf_loss_param=param)
    proto = n.to_proto()
    proto.force_backward = True  # Input blobs need no gradient unless forced
    net = _net_from_proto(proto, caffe.TRAIN)
    net.blobs["data"].data[0] = image
    net.blobs["prob"].data[0] = prob
    loss = float(net.forward()["loss"])
    net.backward()
    return loss, net.blobs["prob"].diff[0].copy()


def _parse_net(net_path: Path) -> Any:
    from caffe.proto import caffe_pb2
    from .nets import parse
    return parse(net_path, caffe_pb2.NetParameter())


def _source(net: Any) -> Optional[Any]:
    """The layer that makes the net's "data": a test net's ImageSegData, or
    a deploy net's Input."""
    return next((layer for layer in net.layer
                 if not layer.bottom and "data" in layer.top), None)


def _feed(source: Optional[Any]) -> Feed:
    """How ImageSegData feeds the net; VOC's mean on BGR for other sources."""
    return feed_of(source) if source is not None and source.type == "ImageSegData" else Feed()


def _input_size(source: Optional[Any]) -> Tuple[int, int]:
    """(height, width) ImageSegData pads to, or an Input layer declares;
    (0, 0) if neither."""
    if source is not None and source.type == "ImageSegData":
        return crop_of(source)
    if source is not None and source.type == "Input" and source.input_param.shape:
        dims = source.input_param.shape[0].dim
        if len(dims) == 4:
            return int(dims[2]), int(dims[3])
    return 0, 0


def feed_of_net(net_path: Path) -> Feed:
    """How the test net's data layer feeds it; VOC's mean on BGR if it has none."""
    return _feed(_source(_parse_net(net_path)))


def _deploy(src: Any, height: int, width: int, channels: int) -> Any:
    """The net with an Input layer of the given size in place of its sources
    of "data", and without the layers that need labels."""
    from caffe.proto import caffe_pb2

    out = caffe_pb2.NetParameter()
    out.name = src.name
    data = out.layer.add(name="data", type="Input", top=["data"])
    data.input_param.shape.add(dim=[1, channels, height, width])
    for layer in src.layer:
        if (not layer.bottom and "data" in layer.top) or \
                any(b in ("label", "data_dim") for b in layer.bottom):
            continue
        out.layer.add().CopyFrom(layer)
    return out


def predict_image(net_path: Path, weights: Path, rgb: np.ndarray, stride: int = 8,
                  feed: Optional[Feed] = None, scores_blob: str = "fc8_interp") -> np.ndarray:
    """Softmax probabilities K x H x W of a trained test net on one RGB image,
    fed as its data layer feeds it unless ``feed`` says otherwise.
    The image is padded with the mean (bottom and right) to the test net's
    crop, as its data layer pads, or to stride * k + 1 pixels if larger (the
    sizes at which the net's zoom returns exactly the input grid). The pad
    size matters: the first convolution's bias makes padding non-zero."""
    import caffe

    if not Path(weights).is_file():
        raise FileNotFoundError(f"no weights file {weights}")
    h, w = rgb.shape[:2]
    src = _parse_net(net_path)
    source = _source(src)
    ch, cw = _input_size(source)
    ph = max(ch, -(-(h - 1) // stride) * stride + 1)
    pw = max(cw, -(-(w - 1) // stride) * stride + 1)
    image = (feed or _feed(source)).net_input(rgb)
    net = _net_from_proto(_deploy(src, ph, pw, len(image)), caffe.TEST)
    net.copy_from(str(weights))
    x = np.zeros((len(image), ph, pw), np.float32)
    x[:, :h, :w] = image
    net.blobs["data"].data[0] = x
    net.forward()
    if scores_blob not in net.blobs:
        raise KeyError(f"{net_path} has no blob {scores_blob!r}")
    got = net.blobs[scores_blob].data.shape[2:]
    if got != (ph, pw):  # cutting them to the image would shift them against it
        raise ValueError(f"{net_path} gives {got[0]}x{got[1]} scores for a {ph}x{pw} input: "
                         f"{stride} is not its output stride; give the right --stride")
    s = net.blobs[scores_blob].data[0, :, :h, :w]
    p = np.exp(s - s.max(0, keepdims=True))
    return (p / p.sum(0, keepdims=True)).astype(np.float32)
