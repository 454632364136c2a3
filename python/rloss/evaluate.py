"""Segmentation scores from a confusion matrix, and running a trained model
over a list file.

The scores follow PASCAL VOC's: per-class IoU = TP / (TP + FP + FN), mIoU
the mean over classes that occur in the labels or the predictions, pixel
accuracy over labelled pixels (255 is skipped).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .data import IGNORE


def confusion(pred: np.ndarray, label: np.ndarray, num_classes: int,
              ignore: int = IGNORE) -> np.ndarray:
    """num_classes x num_classes counts, rows = true class, columns = predicted."""
    pred, label = np.asarray(pred), np.asarray(label)
    if pred.shape != label.shape:
        raise ValueError(f"the prediction is {'x'.join(map(str, pred.shape))} but its label "
                         f"is {'x'.join(map(str, label.shape))}; they must be the same size")
    pred = pred.ravel().astype(np.int64)
    label = label.ravel().astype(np.int64)
    keep = label != ignore
    bad = keep & ((label < 0) | (label >= num_classes))
    if bad.any():
        raise ValueError(f"label {int(label[bad][0])} is outside 0..{num_classes - 1} and is "
                         f"not the ignore label {ignore}; check --num-labels")
    bad = keep & ((pred < 0) | (pred >= num_classes))
    if bad.any():
        raise ValueError(f"predicted class {int(pred[bad][0])} is outside "
                         f"0..{num_classes - 1}; check --num-labels")
    idx = label[keep] * num_classes + pred[keep]
    return np.bincount(idx, minlength=num_classes ** 2).reshape(num_classes, num_classes)


@dataclass
class Scores:
    confusion: np.ndarray
    iou: np.ndarray = field(init=False)  # NaN where a class occurs nowhere
    class_accuracy: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        c = self.confusion.astype(np.float64)
        tp = np.diag(c)
        union = c.sum(0) + c.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            self.iou = np.where(union > 0, tp / union, np.nan)
            self.class_accuracy = np.where(c.sum(1) > 0, tp / c.sum(1), np.nan)

    @property
    def miou(self) -> float:
        return float(np.nanmean(self.iou)) if np.isfinite(self.iou).any() else float("nan")

    @property
    def pixel_accuracy(self) -> float:
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total else float("nan")

    @property
    def mean_class_accuracy(self) -> float:
        ok = np.isfinite(self.class_accuracy)
        return float(self.class_accuracy[ok].mean()) if ok.any() else float("nan")


@dataclass
class Prediction:
    name: str
    image: np.ndarray  # H x W x 3 RGB uint8 (what the net saw, mean added back)
    label: np.ndarray  # H x W uint8
    prob: np.ndarray   # K x H x W


def _eval_net(net_path: Path, list_path: Optional[Path],
              data_root: Optional[Path]) -> Tuple[Path, Any]:
    """A temporary copy of the test net that reads one image at a time, in
    list order (the names and data_dim go by that), from --list when given;
    and its (first) ImageSegData layer, for the list, crop and mean."""
    from google.protobuf import text_format
    from caffe.proto import caffe_pb2
    from .nets import parse
    net = parse(net_path, caffe_pb2.NetParameter())
    data = [layer for layer in net.layer if layer.type == "ImageSegData"]
    if not data:
        raise ValueError(f"{net_path} has no ImageSegData layer to read the list with")
    for layer in data:
        p = layer.image_data_param
        p.batch_size, p.shuffle = 1, False
        if list_path is not None:
            p.source = str(Path(list_path).resolve())
        if data_root is not None:
            p.root_folder = str(Path(data_root).resolve()) + "/"
    fd, tmp = tempfile.mkstemp(suffix=".prototxt", prefix="rloss_eval_")
    with os.fdopen(fd, "w") as f:
        f.write(text_format.MessageToString(net))
    return Path(tmp), data[0]


def predict(net_path: Path, weights: Path, list_path: Optional[Path] = None,
            data_root: Optional[Path] = None, scores_blob: str = "fc8_interp",
            progress: bool = True) -> Iterator[Prediction]:
    """Run a test net (ImageSegData + ``fc8_interp``) over its list, one image
    at a time whatever its batch size, its scores cut to data_dim. Images
    larger than the net's crop are refused up front: the data layer would
    score only their centre."""
    import caffe
    from .progress import bar
    from .data import check_fits, crop_of, feed_of, read_list

    if not Path(weights).is_file():
        raise FileNotFoundError(f"no weights file {weights}")
    net_file, layer = _eval_net(Path(net_path), list_path, data_root)
    try:
        src, root = Path(layer.image_data_param.source), layer.image_data_param.root_folder
        names = [Path(img).stem for img, _ in read_list(src)]
        height, width = crop_of(layer)
        if height and width:
            check_fits(src, root, height, width, "generate the test net with a "
                       "--test-crop-size at least that (`rloss prototxt`)")
        feed = feed_of(layer)  # the figures want the pixels back
        net = caffe.Net(str(net_file), str(weights), caffe.TEST)
    finally:
        net_file.unlink()
    if scores_blob not in net.blobs:
        raise KeyError(f"{net_path} has no blob {scores_blob!r}; the test nets of "
                       "`rloss prototxt` end in fc8_interp")
    for name in bar(names, desc=f"eval {Path(weights).name}", unit="img", disable=not progress):
        net.forward()
        h, w = (int(v) for v in net.blobs["data_dim"].data.ravel()[:2])
        scores = net.blobs[scores_blob].data[0, :, :h, :w]
        prob = np.exp(scores - scores.max(0, keepdims=True))
        prob /= prob.sum(0, keepdims=True)
        rgb = feed.pixels(net.blobs["data"].data[0, :, :h, :w])
        label = net.blobs["label"].data[0, 0, :h, :w].astype(np.uint8)
        yield Prediction(name, rgb, label, prob.astype(np.float32))


def evaluate(predictions: Iterator[Prediction], num_classes: Optional[int] = None,
             keep: bool = False) -> Tuple[Scores, List[Prediction]]:
    """Accumulate a confusion matrix (over the net's classes unless told);
    keep the predictions when asked."""
    total: Optional[np.ndarray] = None
    kept = []
    for p in predictions:
        k = num_classes or p.prob.shape[0]
        if k < p.prob.shape[0]:
            # Classes past k would be scored as wrong or dropped: a silent wrong number.
            raise ValueError(f"{p.name}: the scores have {p.prob.shape[0]} classes but "
                             f"--num-labels is {k}; give {p.prob.shape[0]} or leave it out")
        if total is None:
            total = np.zeros((k, k), np.int64)
        total += confusion(p.prob.argmax(0), p.label, k)
        if keep:
            kept.append(p)
    if total is None:
        raise ValueError("the list is empty: nothing to evaluate")
    return Scores(total), kept


def table(scores: Sequence[Scores], names: Sequence[str],
          classes: Optional[Sequence[str]] = None) -> str:
    """A markdown table: one column per model, rows per class then summaries."""
    k = scores[0].confusion.shape[0]
    classes = list(classes or [f"class {i}" for i in range(k)])
    head = "| | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names) + "\n"
    rows = []
    for i in range(k):
        cells = ["—" if np.isnan(s.iou[i]) else f"{100 * s.iou[i]:.1f}" for s in scores]
        rows.append(f"| IoU {classes[i]} | " + " | ".join(cells) + " |")
    rows.append("| **mIoU** | " + " | ".join(f"**{100 * s.miou:.1f}**" for s in scores) + " |")
    rows.append("| pixel accuracy | " + " | ".join(f"{100 * s.pixel_accuracy:.1f}"
                                                   for s in scores) + " |")
    rows.append("| mean class accuracy | " + " | ".join(f"{100 * s.mean_class_accuracy:.1f}"
                                                        for s in scores) + " |")
    return head + "\n".join(rows) + "\n"
