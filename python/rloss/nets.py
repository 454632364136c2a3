"""Published-style DeepLab networks for both training phases, built with NetSpec.

The four networks of the rloss release (DeepLab-LargeFOV, MSc-LargeFOV,
DeepLab-VGG16 with ASPP, DeepLab-v2 ResNet-101) in five variants each: ``train``
(phase 1, partial cross-entropy), ``trainwithdensecrfloss`` (phase 2),
``test``, ``solver`` and ``solverwithdensecrfloss``. Layer and parameter names
are DeepLab-v2's, so published caffemodels load with ``--weights``.

A fifth net, ``small``, is ours: a few dilated convolutions at output stride
4 that train from scratch on a CPU in minutes, for the demo and tests.

The shipped files under ``prototxt/`` keep the release's ``${VARIABLE}``
placeholders (``${EXP}``, ``${NUM_LABELS}``, ...) so that shell scripts fill
them in with sed as before; :func:`fill` does the same in Python. Integer and
float fields cannot hold a placeholder inside NetSpec, so those files are built
with sentinel numbers that are swapped for their placeholders in the text.
:func:`build` instead takes concrete :class:`Options` and needs no filling:
it is what ``rloss prototxt`` writes.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import caffe
from caffe import layers as L
from caffe import params as P
from caffe.proto import caffe_pb2

from .data import VOC_MEAN_BGR

NETS = ("deeplab_largeFOV", "deeplab_msc_largeFOV", "deeplab_vgg16", "resnet-101", "small")
VARIANTS = ("train", "trainwithdensecrfloss", "test", "solver", "solverwithdensecrfloss")

# Sentinels for numeric placeholders; unlikely to occur in a real net.
_NUMERIC = {
    "NUM_LABELS": 990001,
    "BATCH_SIZE": 990002,
    "CROP_SIZE": 990003,
    "TEST_CROP_SIZE": 990004,
    "DENSECRF_LOSS_WEIGHT": 990005,
}

#: Values the release hard-codes; ``fill`` uses them for variables not given.
DEFAULTS: Dict[str, str] = {
    "CROP_SIZE": "321",
    "TEST_CROP_SIZE": "513",
    "TEST_SET": "val",
    "SOLVER_MODE": "GPU",
    "DENSECRF_LOSS_WEIGHT": "1e-8",
}
#: Batch sizes of the release, per network.
BATCH_SIZES = {"deeplab_largeFOV": 20, "deeplab_msc_largeFOV": 30,
               "deeplab_vgg16": 10, "resnet-101": 1, "small": 8}
#: DenseCRF kernel widths of the release (xy, rgb).
SIGMAS = {"deeplab_largeFOV": (100, 15), "deeplab_msc_largeFOV": (100, 15),
          "deeplab_vgg16": (100, 15), "resnet-101": (80, 13), "small": (100, 15)}
#: Output stride: label_shrink and the zoom before the DenseCRF loss use it,
#: so crops must be stride * k + 1 (check_crop).
STRIDES = {"deeplab_largeFOV": 8, "deeplab_msc_largeFOV": 8, "deeplab_vgg16": 8,
           "resnet-101": 8, "small": 4}

Number = Union[int, float]

#: A blob of a NetSpec (caffe.net_spec.Top); pycaffe ships no type hints.
Top = Any
#: A layer's ParamSpec entries (lr_mult, decay_mult, a shared name).
Params = List[Dict[str, Any]]


def parse(path: Path, message: Any) -> Any:
    """A prototxt file read into ``message`` (a caffe_pb2 message), or a
    ValueError naming the file: a caffemodel given for a prototxt, or a
    solver for a net, is the usual mistake."""
    from google.protobuf import text_format
    try:
        text = Path(path).read_text()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text prototxt (a binary file, such as a "
                         "caffemodel?)") from None
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as e:
        kind = {"NetParameter": "net", "SolverParameter": "solver"}.get(
            message.DESCRIPTOR.name, message.DESCRIPTOR.name)
        raise ValueError(f"{path}: not a valid Caffe {kind} prototxt: {e}") from None


def check_crop(net: str, size: int, what: str = "crop size") -> None:
    """Refuse a crop the net cannot take: its scores are 1/stride of the input
    only at stride * k + 1 pixels; at any other size label_shrink (training)
    or the zoomed scores (testing) differ in size from the labels, and Caffe
    aborts when it sets the net up."""
    stride = STRIDES[net]
    if size % stride != 1:
        below = (size - 1) // stride * stride + 1
        raise ValueError(f"{what} {size}: {net} needs {stride}k+1 pixels (such as {below} or "
                         f"{below + stride}); at other sizes its scores and labels differ in "
                         "size and Caffe aborts")


@dataclasses.dataclass
class Options:
    """Everything a generated train/test net depends on besides its topology."""

    num_labels: Number = 21
    batch_size: Number = 20
    crop_size: Number = 321
    test_crop_size: Number = 513
    mean: Sequence[float] = VOC_MEAN_BGR
    data_root: str = "${DATA_ROOT}"
    train_list: str = "${EXP}/list/${TRAIN_SET}.txt"
    test_list: str = "${EXP}/list/${TEST_SET}.txt"
    exp: str = "${EXP}"
    densecrf_weight: Number = 1e-8
    bi_xy_std: float = 100
    bi_rgb_std: float = 15
    scale_factor: float = 1.0
    #: Phase 2's extra loss: "densecrf" (the published method), "ncut"
    #: (Normalized Cut on the same kernel), "size" (Kervadec's size
    #: constraint, bounds size_lower / size_upper as fractions of the image)
    #: or "none" (phase 2 continues with pCE alone: the fair baseline for the
    #: same number of iterations). densecrf_weight is its loss weight.
    regularizer: str = "densecrf"
    size_lower: Sequence[float] = ()
    size_upper: Sequence[float] = ()

    @classmethod
    def published(cls, net: str, **overrides: Any) -> "Options":
        """The release's values for ``net``; anything passed overrides them."""
        xy, rgb = SIGMAS[net]
        opts = cls(batch_size=BATCH_SIZES[net], bi_xy_std=xy, bi_rgb_std=rgb)
        return dataclasses.replace(opts, **overrides)

    @classmethod
    def template(cls, net: str) -> "Options":
        """Sentinels for the shipped files' numeric placeholders."""
        return cls.published(net, **{k.lower(): v for k, v in _NUMERIC.items()
                                     if k != "DENSECRF_LOSS_WEIGHT"},
                             densecrf_weight=_NUMERIC["DENSECRF_LOSS_WEIGHT"])


_LEARN: Params = [dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)]
_FROZEN: Params = [dict(lr_mult=0, decay_mult=1), dict(lr_mult=0, decay_mult=0)]
_HEAD: Params = [dict(lr_mult=10, decay_mult=1), dict(lr_mult=20, decay_mult=0)]
_GAUSS = dict(weight_filler=dict(type="gaussian", std=0.01),
              bias_filler=dict(type="constant", value=0))


class _Builder:
    """A NetSpec plus the options every network shares."""

    def __init__(self, net_id: str, phase: str, densecrf: bool, opts: Options):
        self.n = caffe.NetSpec()
        self.net_id = net_id
        self.train = phase == "train"
        self.densecrf = densecrf
        self.o = opts
        self.stride = STRIDES[net_id]

    def __setitem__(self, name: str, top: Top) -> None:
        setattr(self.n, name, top)

    def __getitem__(self, name: str) -> Top:
        return getattr(self.n, name)

    def params(self, spec: Params) -> Dict[str, Params]:
        return dict(param=spec) if self.train else {}

    def data(self, data_dim: bool, scale_factors: Optional[List[float]] = None) -> None:
        if self.train:
            transform = dict(mean_value=list(self.o.mean), crop_size=self.o.crop_size,
                             mirror=True)
            if scale_factors:
                transform["scale_factors"] = scale_factors
            tops = L.ImageSegData(
                image_data_param=dict(root_folder=self.o.data_root,
                                      source=self.o.train_list,
                                      label_type=P.ImageData.PIXEL,
                                      batch_size=self.o.batch_size, shuffle=True),
                transform_param=transform, include=dict(phase=caffe.TRAIN),
                ntop=3 if data_dim else 2)
        else:
            tops = L.ImageSegData(
                image_data_param=dict(root_folder=self.o.data_root,
                                      source=self.o.test_list,
                                      label_type=P.ImageData.PIXEL, batch_size=1),
                transform_param=dict(mean_value=list(self.o.mean),
                                     crop_size=self.o.test_crop_size, mirror=False),
                include=dict(phase=caffe.TEST), ntop=3)
        self["data"], self["label"] = tops[0], tops[1]
        if len(tops) == 3:
            self["data_dim"] = tops[2]

    def conv(self, name: str, bottom: Top, num_output: Number, kernel: int, pad: int = 0,
             stride: int = 1, dilation: int = 1, param: Optional[Params] = None,
             filler: Optional[dict] = None, relu: Optional[str] = None, bias: bool = True,
             top: Optional[str] = None) -> Top:
        cp = dict(num_output=num_output, kernel_size=kernel)
        if pad:
            cp["pad"] = pad
        if stride != 1:
            cp["stride"] = stride
        if dilation != 1:
            cp["dilation"] = dilation
        if not bias:
            cp["bias_term"] = False
        if filler:
            cp.update(filler)
        kw = {"name": name} if top else {}
        self[top or name] = L.Convolution(bottom, convolution_param=cp,
                                          **self.params(param if param is not None else _LEARN),
                                          **kw)
        if relu:
            self[relu] = L.ReLU(self[top or name], in_place=True)
        return self[top or name]

    def dropout(self, name: str, bottom: Top) -> None:
        self[name] = L.Dropout(bottom, dropout_ratio=0.5, in_place=True)

    def pool(self, name: str, bottom: Top, kernel: int = 3, stride: int = 2, pad: int = 1,
             ave: bool = False) -> Top:
        self[name] = L.Pooling(bottom, pool=P.Pooling.AVE if ave else P.Pooling.MAX,
                               kernel_size=kernel, stride=stride, pad=pad)
        return self[name]

    def interp(self, name: str, bottom: Top, top: Optional[str] = None,
               **factors: int) -> Top:
        kw = {"name": name} if top else {}
        self[top or name] = L.Interp(bottom, interp_param=factors, **kw)
        return self[top or name]

    def label_shrink(self, name: str = "label_shrink", factor: Optional[int] = None) -> Top:
        factor = factor or self.stride
        return self.interp(name, self["label"], shrink_factor=factor, pad_beg=0, pad_end=0)

    def pce(self, name: str, scores: Top, labels: Top, top: Optional[str] = None) -> None:
        kw = {"name": name} if top else {}
        self[top or name] = L.SoftmaxWithLoss(scores, labels, loss_param=dict(ignore_label=255),
                                              include=dict(phase=caffe.TRAIN), **kw)

    def accuracy(self, name: str, scores: Top, labels: Top, reset: bool = True) -> None:
        sp: Dict[str, object] = {"ignore_label": [255]}
        if not reset:
            sp["reset"] = False
        self[name] = L.SegAccuracy(scores, labels, seg_accuracy_param=sp)

    def densecrf_loss(self, scores: Top, interp_name: str, interp_top: str,
                      softmax: str) -> None:
        """Phase 2's regularizer: the DenseCRF (or NCut) loss on the softmax
        of the zoomed scores, or the size loss on the softmax of the scores."""
        reg = self.o.regularizer
        if reg == "none":
            return
        if reg == "size":
            self["fc8_softmax"] = L.Softmax(scores)
            self["size_loss"] = L.SizeLoss(
                self["fc8_softmax"], loss_weight=self.o.densecrf_weight,
                size_loss_param=dict(lower_bound=list(self.o.size_lower),
                                     upper_bound=list(self.o.size_upper), relative=True))
            return
        if reg not in ("densecrf", "ncut"):
            raise ValueError(f"unknown regularizer {reg!r}; choose densecrf, ncut, size "
                             "or none")
        self.interp(interp_name, scores, top=interp_top, zoom_factor=self.stride)
        self[softmax] = L.Softmax(self[interp_top])
        param = dict(bi_xy_std=self.o.bi_xy_std, bi_rgb_std=self.o.bi_rgb_std)
        if self.o.scale_factor != 1:
            param["scale_factor"] = self.o.scale_factor
        kw = dict(loss_weight=self.o.densecrf_weight, propagate_down=[False, True])
        if reg == "densecrf":
            self["densecrf_loss"] = L.DenseCRFLoss(
                self["data"], self[softmax], loss_param=dict(ignore_label=255),
                densecrf_loss_param=param, **kw)
        else:
            self["ncut_loss"] = L.NormalizedCutLoss(
                self["data"], self[softmax], normalized_cut_loss_param=param, **kw)

    def test_tail(self, scores: Top) -> None:
        """TEST: zoom the scores to the input, score them, silence the rest."""
        self.interp("fc8_interp", scores, zoom_factor=self.stride)
        self.accuracy("accuracy", self["fc8_interp"], self["label"], reset=False)
        self["silence"] = L.Silence(self["label"], self["fc8_interp"], self["data_dim"],
                                    include=dict(phase=caffe.TEST), ntop=0)

    def finish(self, fc8: Top) -> str:
        """LargeFOV's ending, shared by the small net: TEST scores the zoomed
        output; TRAIN adds pCE at label resolution, the phase-2 loss on the
        zoomed softmax, and the accuracy."""
        if not self.train:
            self.test_tail(fc8)
            return self.text()
        self.label_shrink()
        self.pce("loss", fc8, self["label_shrink"], top="softmax_loss")
        if self.densecrf:
            self.densecrf_loss(fc8, "fc8_interp", "fc8_interp", "fc8_interp_softmax")
        self.accuracy("accuracy", fc8, self["label_shrink"])
        return self.text()

    def text(self) -> str:
        proto = self.n.to_proto()
        proto.name = self.net_id if self.o.exp != "${EXP}" else "${NET_ID}"
        return str(proto)


def _placeholders(text: str) -> str:
    for var, value in _NUMERIC.items():
        text = re.sub(rf"(:\s*){value}(\.0)?\b", rf"\g<1>${{{var}}}", text)
    return text


def _vgg_trunk(b: _Builder, bottom: Top, param: Optional[Params] = None,
               pool5a: bool = True) -> Top:
    """VGG16 with DeepLab's 3x3/2 pools, stride 8 and dilated conv5."""
    blocks = [(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)]
    x = bottom
    for i, (convs, width) in enumerate(blocks, start=1):
        for j in range(1, convs + 1):
            x = b.conv(f"conv{i}_{j}", x, width, 3, pad=2 if i == 5 else 1,
                       dilation=2 if i == 5 else 1, param=param, relu=f"relu{i}_{j}")
        x = b.pool(f"pool{i}", x, stride=2 if i <= 3 else 1)
    if pool5a:
        x = b.pool("pool5a", x, stride=1, ave=True)
    return x


def _largefov_head(b: _Builder, x: Top, param: Optional[Params] = None,
                   head_param: Optional[Params] = None) -> Top:
    x = b.conv("fc6", x, 1024, 3, pad=12, dilation=12, param=param, relu="relu6")
    b.dropout("drop6", x)
    x = b.conv("fc7", x, 1024, 1, param=param, relu="relu7")
    b.dropout("drop7", x)
    return b.conv(f"fc8_{b.o.exp}", x, b.o.num_labels, 1,
                  param=head_param if head_param is not None else _HEAD,
                  filler=_GAUSS if b.train else None)


def deeplab_largefov(phase: str, densecrf: bool, opts: Options) -> str:
    b = _Builder("deeplab_largeFOV", phase, densecrf, opts)
    b.data(data_dim=not b.train)
    fc8 = _largefov_head(b, _vgg_trunk(b, b["data"]))
    return b.finish(fc8)


def deeplab_msc_largefov(phase: str, densecrf: bool, opts: Options) -> str:
    """LargeFOV with four extra classifiers on the input and pool1-4 (MSc), the
    trunk frozen: it fine-tunes a trained LargeFOV."""
    b = _Builder("deeplab_msc_largeFOV", phase, densecrf, opts)
    b.data(data_dim=not b.train)
    branches = []

    def branch(src: str, stride: int) -> None:
        f = dict(weight_filler=dict(type="gaussian", std=0.001),
                 bias_filler=dict(type="constant", value=0)) if b.train else None
        x = b.conv(f"{src}_conv", b[src], 128, 3, pad=1, stride=stride, filler=f,
                   relu=f"relu_{src}_conv")
        b.dropout(f"drop_{src}_conv", x)
        x = b.conv(f"{src}_fc", x, 128, 1, filler=f, relu=f"relu_{src}_fc")
        b.dropout(f"drop_{src}_fc", x)
        branches.append(b.conv(f"{src}_ms", x, b.o.num_labels, 1,
                               filler=_GAUSS if b.train else None))

    branch("data", 8)
    blocks = [(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)]
    x = b["data"]
    for i, (convs, width) in enumerate(blocks, start=1):
        for j in range(1, convs + 1):
            x = b.conv(f"conv{i}_{j}", x, width, 3, pad=2 if i == 5 else 1,
                       dilation=2 if i == 5 else 1, param=_FROZEN, relu=f"relu{i}_{j}")
        x = b.pool(f"pool{i}", x, stride=2 if i <= 3 else 1)
        if i <= 4:
            branch(f"pool{i}", {1: 4, 2: 2}.get(i, 1))
    x = b.pool("pool5a", x, stride=1, ave=True)
    fc8 = _largefov_head(b, x, param=_FROZEN, head_param=_FROZEN)
    b["fc_fusion"] = L.Eltwise(*branches, fc8, operation=P.Eltwise.SUM)
    if not b.train:
        b.test_tail(b["fc_fusion"])
        return b.text()
    b.label_shrink()
    b.pce("loss", b["fc_fusion"], b["label_shrink"])
    if densecrf:
        b.densecrf_loss(b["fc_fusion"], "fc_fusion_interp", "fc_fusion_interp",
                        "fc_fusion_interp_softmax")
    b.accuracy("accuracy", b["fc_fusion"], b["label_shrink"])
    return b.text()


def deeplab_vgg16(phase: str, densecrf: bool, opts: Options) -> str:
    """DeepLab-v2 VGG16 with ASPP: four dilated fc6-fc8 branches, summed."""
    b = _Builder("deeplab_vgg16", phase, densecrf, opts)
    b.data(data_dim=True)
    pool5 = _vgg_trunk(b, b["data"], pool5a=False)
    outs = []
    for i, rate in enumerate((6, 12, 18, 24), start=1):
        x = b.conv(f"fc6_{i}", pool5, 1024, 3, pad=rate, dilation=rate, relu=f"relu6_{i}")
        b.dropout(f"drop6_{i}", x)
        x = b.conv(f"fc7_{i}", x, 1024, 1, relu=f"relu7_{i}")
        b.dropout(f"drop7_{i}", x)
        outs.append(b.conv(f"fc8_{b.o.exp}_{i}", x, b.o.num_labels, 1, param=_HEAD,
                           filler=_GAUSS if b.train else None))
    b[f"fc8_{b.o.exp}"] = L.Eltwise(*outs, operation=P.Eltwise.SUM)
    fc8 = b[f"fc8_{b.o.exp}"]
    if not b.train:
        b.test_tail(fc8)
        return b.text()
    b.label_shrink()
    if densecrf:
        b.densecrf_loss(fc8, "fc8_interp", "fc8_interp", "fc8_interp_softmax")
    b.pce("loss", fc8, b["label_shrink"])
    b.accuracy("accuracy", fc8, b["label_shrink"])
    b["silence"] = L.Silence(b["data_dim"], ntop=0)
    return b.text()


# ResNet-101 stages: (stage, block names, bottleneck width, output width,
# first stride, dilation).
_RESNET_STAGES = [
    (2, ["a", "b", "c"], 64, 256, 1, 1),
    (3, ["a", "b1", "b2", "b3"], 128, 512, 2, 1),
    (4, ["a"] + [f"b{i}" for i in range(1, 23)], 256, 1024, 1, 2),
    (5, ["a", "b", "c"], 512, 2048, 1, 4),
]


def _resnet_trunk(b: _Builder, bottom: Top, sfx: str) -> Top:
    """DeepLab-v2 ResNet-101 (dilated res4/res5, output stride 8). Layers of
    every scale share their parameters by name; blob names carry the scale."""

    def conv_bn(name: str, bn: str, x: Top, width: int, kernel: int, stride: int = 1,
                pad: int = 0, dilation: int = 1, relu: bool = True) -> Top:
        shared = [dict(name=f"{name}_0", lr_mult=1, decay_mult=1)]
        cp = dict(num_output=width, kernel_size=kernel, pad=pad, stride=stride,
                  bias_term=False)
        if dilation != 1:
            cp["dilation"] = dilation
        b[name + sfx] = L.Convolution(x, convolution_param=cp, **b.params(shared))
        x = b[name + sfx]
        b[f"bn{bn}{sfx}"] = L.BatchNorm(
            x, batch_norm_param=dict(use_global_stats=True), in_place=True,
            **b.params([dict(name=f"bn{bn}_{i}", lr_mult=0) for i in range(3)]))
        b[f"scale{bn}{sfx}"] = L.Scale(
            x, scale_param=dict(bias_term=True), in_place=True,
            **b.params([dict(name=f"scale{bn}_{i}", lr_mult=0) for i in range(2)]))
        if relu:
            b[f"{name}_relu{sfx}"] = L.ReLU(x, in_place=True)
        return x

    x = conv_bn("conv1", "_conv1", bottom, 64, 7, stride=2, pad=3)
    x = b.pool("pool1" + sfx, x)
    for stage, blocks, width, out, stride, dil in _RESNET_STAGES:
        for k, blk in enumerate(blocks):
            tag = f"{stage}{blk}"
            first = k == 0
            s = stride if first else 1
            shortcut = x
            if first:
                shortcut = conv_bn(f"res{tag}_branch1", f"{tag}_branch1", x, out, 1,
                                   stride=s, relu=False)
            y = conv_bn(f"res{tag}_branch2a", f"{tag}_branch2a", x, width, 1, stride=s)
            y = conv_bn(f"res{tag}_branch2b", f"{tag}_branch2b", y, width, 3,
                        pad=dil, dilation=dil)
            y = conv_bn(f"res{tag}_branch2c", f"{tag}_branch2c", y, out, 1, relu=False)
            b[f"res{tag}{sfx}"] = L.Eltwise(shortcut, y)
            x = b[f"res{tag}{sfx}"]
            b[f"res{tag}_relu{sfx}"] = L.ReLU(x, in_place=True)
    return x


def resnet101(phase: str, densecrf: bool, opts: Options) -> str:
    """DeepLab-v2 ResNet-101: ASPP on three scales (1, 0.75, 0.5) fused by max."""
    b = _Builder("resnet-101", phase, densecrf, opts)
    b.data(data_dim=not b.train, scale_factors=[0.5, 0.75, 1, 1.25, 1.5])
    exp = b.o.exp
    b.interp("data_res05", b["data"], shrink_factor=2, pad_beg=0, pad_end=0)
    b.interp("data_res075", b["data"], shrink_factor=4, zoom_factor=3, pad_beg=0, pad_end=0)
    heads = {}
    for sfx, data in (("", "data"), ("_res05", "data_res05"), ("_res075", "data_res075")):
        res5c = _resnet_trunk(b, b[data], sfx)
        branches = []
        for i, rate in enumerate((6, 12, 18, 24)):
            shared = [dict(name=f"fc1_{exp}_c{i}_w", lr_mult=10, decay_mult=1),
                      dict(name=f"fc1_{exp}_c{i}_b", lr_mult=20, decay_mult=0)]
            cp: Dict[str, object] = dict(num_output=b.o.num_labels, kernel_size=3, pad=rate,
                                         dilation=rate)
            if b.train:
                cp.update(_GAUSS)
            name = f"fc1_{exp}{sfx}_c{i}"
            b[name] = L.Convolution(res5c, convolution_param=cp, **b.params(shared))
            branches.append(b[name])
        b[f"fc1_{exp}{sfx}"] = L.Eltwise(*branches, operation=P.Eltwise.SUM)
        heads[sfx] = b[f"fc1_{exp}{sfx}"]
    b.interp(f"fc1_{exp}_res05_interp", heads["_res05"], zoom_factor=2, pad_beg=0, pad_end=0)
    b.interp(f"fc1_{exp}_res075_interp", heads["_res075"], zoom_factor=4, shrink_factor=3,
             pad_beg=0, pad_end=0)
    b["fc_fusion"] = L.Eltwise(heads[""], b[f"fc1_{exp}_res075_interp"],
                               b[f"fc1_{exp}_res05_interp"], operation=P.Eltwise.MAX)
    if not b.train:
        b.test_tail(b["fc_fusion"])
        return b.text()
    b.label_shrink()
    b.pce("loss", b["fc_fusion"], b["label_shrink"])
    b.accuracy("accuracy", b["fc_fusion"], b["label_shrink"])
    if densecrf:
        b.densecrf_loss(b["fc_fusion"], "fc1_interp", "fc8_interp", "fc8_interp_softmax")
    b.pce("loss_res1", heads[""], b["label_shrink"])
    b.accuracy("accuracy_res1", heads[""], b["label_shrink"])
    b.pce("loss_res075", b[f"fc1_{exp}_res075_interp"], b["label_shrink"])
    b.accuracy("accuracy_res075", b[f"fc1_{exp}_res075_interp"], b["label_shrink"])
    b.label_shrink("label_shrink16", 16)
    b.pce("loss_res05", heads["_res05"], b["label_shrink16"])
    b.accuracy("accuracy_res05", heads["_res05"], b["label_shrink16"])
    return b.text()


def small(phase: str, densecrf: bool, opts: Options) -> str:
    """Ours, not the release's: DeepLab-LargeFOV's shape in miniature (two
    3x3/2 pools, then dilated convolutions; output stride 4, receptive field
    131 px), about 0.14 GMAC per 97x97 image, MSRA-initialised so that it
    trains from scratch on a CPU in minutes."""
    b = _Builder("small", phase, densecrf, opts)
    b.data(data_dim=not b.train)
    msra = dict(weight_filler=dict(type="msra"), bias_filler=dict(type="constant", value=0))
    x = b["data"]
    for i, (width, dilations) in enumerate([(16, (1, 1)), (32, (1, 1)), (64, (2, 4))], start=1):
        for j, dil in enumerate(dilations, start=1):
            x = b.conv(f"conv{i}_{j}", x, width, 3, pad=dil, dilation=dil,
                       filler=msra if b.train else None, relu=f"relu{i}_{j}")
        if i <= 2:
            x = b.pool(f"pool{i}", x)
    x = b.conv("fc6", x, 96, 3, pad=8, dilation=8, filler=msra if b.train else None,
               relu="relu6")
    b.dropout("drop6", x)
    x = b.conv("fc7", x, 96, 1, filler=msra if b.train else None, relu="relu7")
    b.dropout("drop7", x)
    fc8 = b.conv(f"fc8_{b.o.exp}", x, b.o.num_labels, 1, filler=_GAUSS if b.train else None)
    return b.finish(fc8)


BUILDERS: Dict[str, Callable[..., str]] = {
    "deeplab_largeFOV": deeplab_largefov,
    "deeplab_msc_largeFOV": deeplab_msc_largefov,
    "deeplab_vgg16": deeplab_vgg16,
    "resnet-101": resnet101,
    "small": small,
}


@dataclasses.dataclass
class Schedule:
    """Solver settings of one net for both phases (phase 2 uses base_lr2)."""

    base_lr: float = 1e-3
    base_lr2: float = 1e-4
    lr_policy: str = "step"
    gamma: float = 0.1
    stepsize: int = 3000
    max_iter: int = 9000
    momentum: float = 0.9
    weight_decay: float = 5e-4
    snapshot: int = 1000
    type: str = "SGD"


#: The release's schedule for its nets; the small net trains from scratch,
#: where Adam needs no per-dataset learning-rate search.
SCHEDULES: Dict[str, Schedule] = {net: Schedule() for net in NETS}
SCHEDULES["small"] = Schedule(base_lr=1e-3, base_lr2=1e-4, stepsize=1500, max_iter=2000,
                              snapshot=500, weight_decay=5e-4, type="Adam")


def solver(phase2: bool, train_net: Optional[str] = None,
           snapshot_prefix: Optional[str] = None, solver_mode: str = "${SOLVER_MODE}",
           schedule: Optional[Schedule] = None) -> str:
    """A solver file; without arguments, the release's (with its placeholders)."""
    sch = schedule or Schedule()
    s = caffe_pb2.SolverParameter()
    net = "trainwithdensecrfloss" if phase2 else "train"
    s.train_net = train_net or f"${{EXP}}/config/${{NET_ID}}/{net}_${{TRAIN_SET}}.prototxt"
    if sch.type != "SGD":
        s.type = sch.type
    s.lr_policy = sch.lr_policy
    s.gamma = sch.gamma
    s.stepsize = sch.stepsize
    s.base_lr = sch.base_lr2 if phase2 else sch.base_lr
    s.random_seed = 40
    s.display = 10
    s.max_iter = sch.max_iter
    s.momentum = sch.momentum
    if sch.type == "Adam":
        s.momentum2 = 0.999
    s.weight_decay = sch.weight_decay
    s.snapshot = sch.snapshot
    s.snapshot_prefix = snapshot_prefix or f"${{EXP}}/model/${{NET_ID}}/{net}"
    s.solver_mode = caffe_pb2.SolverParameter.GPU
    return str(s).replace("solver_mode: GPU", f"solver_mode: {solver_mode}")


def render(net: str, variant: str) -> str:
    """The text of one shipped file, placeholders included."""
    if net not in BUILDERS:
        raise ValueError(f"unknown net {net!r}; choose one of {', '.join(NETS)}")
    header = (f"# {net}: {variant}. Generated by `python -m rloss.nets`; "
              "fill its placeholders with rloss.nets.fill or sed.\n")
    if variant == "solver":
        return header + solver(False, schedule=SCHEDULES[net])
    if variant == "solverwithdensecrfloss":
        return header + solver(True, schedule=SCHEDULES[net])
    return header + _placeholders(build(net, variant, Options.template(net)))


def build(net: str, variant: str, opts: Options) -> str:
    """A train or test net with concrete options (no placeholders unless the
    options hold some)."""
    if net not in BUILDERS:
        raise ValueError(f"unknown net {net!r}; choose one of {', '.join(NETS)}")
    if variant == "test":
        return BUILDERS[net]("test", False, opts)
    if variant in ("train", "trainwithdensecrfloss"):
        return BUILDERS[net]("train", variant != "train", opts)
    raise ValueError(f"unknown variant {variant!r}; choose one of train, "
                     "trainwithdensecrfloss, test")


def fill(text: str, variables: Mapping[str, object], net: Optional[str] = None) -> str:
    """Replace ${VAR} placeholders as the release's sub.sed did.

    Unset variables fall back to the release's values (DEFAULTS, and the
    network's batch size); any placeholder left after that is an error, so a
    half-filled file never reaches Caffe.
    """
    values = dict(DEFAULTS)
    if net:
        values["NET_ID"] = net
        values["BATCH_SIZE"] = str(BATCH_SIZES[net])
    values.update({k: str(v) for k, v in variables.items()})
    out = re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), text)
    left = sorted(set(re.findall(r"\$\{(\w+)\}", out)))
    if left:
        raise KeyError(f"no value for {', '.join(left)}; pass them as variables")
    return out


def write_all(out_dir: Path) -> List[Path]:
    """Regenerate prototxt/<net>/<variant>.prototxt for every net."""
    written = []
    for net in NETS:
        folder = out_dir / net
        folder.mkdir(parents=True, exist_ok=True)
        for variant in VARIANTS:
            path = folder / f"{variant}.prototxt"
            path.write_text(render(net, variant))
            written.append(path)
    return written


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Regenerate the shipped prototxt/ files.")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2] / "prototxt")
    for p in write_all(ap.parse_args().out):
        print(p)
