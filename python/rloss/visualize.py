"""Figures: loss curves, confusion matrices, prediction grids and the
DenseCRF gradient grid. Matplotlib only, headless (Agg)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .data import IGNORE, colorize  # noqa: E402


def _save(fig: Figure, png: Path, title: str = "") -> Path:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def read_csv(path: Path) -> List[Dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _series(rows: List[Dict[str, str]], key: str) -> Tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for r in rows:
        v = r.get(key, "")
        if v not in ("", None):
            xs.append(float(r["iter"]))
            ys.append(float(v))
    return np.array(xs), np.array(ys)


def _smooth(y: np.ndarray, width: int) -> np.ndarray:
    if width <= 1 or y.size < width:
        return y
    kernel = np.ones(width) / width
    pad = np.concatenate([np.full(width - 1, y[0]), y])
    return np.convolve(pad, kernel, mode="valid")


def loss_curves(csv_path: Path, png: Path, title: str = "") -> Path:
    """One panel per logged quantity (loss terms, accuracies) against the
    iteration, phases in different colours, with a running mean."""
    rows = read_csv(csv_path)
    if not rows:
        raise ValueError(f"{csv_path} has no rows to plot")
    skip = {"phase", "iter", "lr", "seconds"}
    keys = [k for k in rows[0] if k not in skip and any(r.get(k) for r in rows)]
    phases = sorted({r.get("phase", "1") for r in rows})
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for i, ph in enumerate(phases):
            xs, ys = _series([r for r in rows if r.get("phase", "1") == ph], key)
            if xs.size == 0:
                continue
            ax.plot(xs, ys, color=f"C{i}", alpha=0.25, lw=0.8)
            ax.plot(xs, _smooth(ys, max(1, xs.size // 30)), color=f"C{i}", lw=1.6,
                    label=f"phase {ph}")
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return _save(fig, png, title)


def confusion_figure(conf: np.ndarray, iou: np.ndarray, classes: Sequence[str],
                     png: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix beside per-class IoU bars."""
    k = conf.shape[0]
    fig, (a, b) = plt.subplots(1, 2, figsize=(5 + 0.35 * k, 4 + 0.1 * k))
    rows = conf.sum(1, keepdims=True).astype(np.float64)
    norm = np.divide(conf, rows, out=np.zeros(conf.shape), where=rows > 0)
    im = a.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    a.set_xticks(range(k), classes, rotation=90, fontsize=7)
    a.set_yticks(range(k), classes, fontsize=7)
    a.set_xlabel("predicted")
    a.set_ylabel("true")
    if k <= 8:
        for i in range(k):
            for j in range(k):
                a.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                       color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=a, fraction=0.046)
    b.barh(range(k), np.nan_to_num(iou) * 100, color=[tuple(c / 255) for c in
                                                      colorize(np.arange(k)[None])[0]])
    b.set_yticks(range(k), classes, fontsize=7)
    b.invert_yaxis()
    b.set_xlim(0, 100)
    b.set_xlabel("IoU (%)")
    b.set_title(f"mIoU {np.nanmean(iou) * 100:.1f} %" if np.isfinite(iou).any() else "")
    return _save(fig, png, title)


def label_rgb(label: np.ndarray) -> np.ndarray:
    """A label map as colours, unlabelled pixels white."""
    rgb = colorize(label)
    rgb[label == IGNORE] = 255
    return rgb


def image_grid(rows: Sequence[Sequence[np.ndarray]], columns: Sequence[str], png: Path,
               row_titles: Optional[Sequence[str]] = None, cell: float = 2.2) -> Path:
    """A grid of RGB pictures (or label maps, coloured); one row per image."""
    n, m = len(rows), len(columns)
    fig, axes = plt.subplots(n, m, figsize=(cell * m, cell * n * 0.85), squeeze=False)
    for i, row in enumerate(rows):
        for j, pic in enumerate(row):
            ax = axes[i][j]
            ax.imshow(label_rgb(pic) if pic.ndim == 2 else pic, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(columns[j], fontsize=9)
        if row_titles:
            axes[i][0].set_ylabel(row_titles[i], fontsize=8)
    return _save(fig, png)


def softmax_backward(prob: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """A gradient with respect to softmax outputs, taken back to the scores
    (logits): S_k (g_k - sum_j S_j g_j). This is what the net's weights see."""
    return prob * (grad - (prob * grad).sum(0, keepdims=True))


def gradient_grid(rgb: np.ndarray, prob: np.ndarray, grad: np.ndarray, png: Path,
                  classes: Optional[Sequence[str]] = None, title: str = "") -> Path:
    """The paper's figure, one row per class: the softmax probability S_k,
    the DenseCRF loss gradient -2WS_k/N with respect to it (negative
    everywhere: more mass is always rewarded, most where similar pixels
    already agree), and that gradient taken through the softmax to the
    scores, whose sign says where descent raises (blue) or lowers (red) the
    class."""
    k = prob.shape[0]
    classes = list(classes or [f"class {i}" for i in range(k)])
    logit = softmax_backward(prob, grad)
    fig, axes = plt.subplots(k, 4, figsize=(12, 2.8 * k), squeeze=False)
    glim = float(np.abs(grad).max()) or 1.0
    llim = float(np.abs(logit).max()) or 1.0
    for c in range(k):
        axes[c][0].imshow(rgb)
        axes[c][0].set_ylabel(classes[c])
        ims = [axes[c][1].imshow(prob[c], vmin=0, vmax=1, cmap="viridis"),
               axes[c][2].imshow(grad[c], vmin=-glim, vmax=0, cmap="magma"),
               axes[c][3].imshow(logit[c], vmin=-llim, vmax=llim, cmap="RdBu_r")]
        for j, im in enumerate(ims, start=1):
            fig.colorbar(im, ax=axes[c][j], fraction=0.046)
        for ax in axes[c]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0][0].set_title("image")
    axes[0][1].set_title("probability S_k")
    axes[0][2].set_title("∂loss/∂S_k")
    axes[0][3].set_title("∂loss/∂score_k (via softmax)")
    return _save(fig, png, title)
