"""Scribbles versus full masks on any VOC-layout folder: the comparison the
paper makes, run end to end with one net and one schedule.

Arms (all on the same training images, evaluated on the same held-out ones):

- ``pce``: partial cross-entropy on synthesized scribbles, phase 1 then phase
  2 with pCE alone (so it gets as many iterations as the DenseCRF arm);
- ``densecrf``: phase 2 with pCE + DenseCRF loss from pce's phase-1 weights,
  sigmas and loss weight chosen on a tuning split of the training images
  (never on the held-out ones);
- ``full``: cross-entropy on the full masks, phase 1 then phase 2.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np

from . import config, data, nets, scribbles
from .evaluate import Scores, evaluate, predict


@dataclasses.dataclass
class Setup:
    net: str = "small"
    fraction: float = 0.03       # share of pixels the synthesized scribbles label
    seed: int = 0
    test_fraction: float = 0.25  # held out for the final table
    tune_fraction: float = 0.2   # of the rest: picks sigmas and the loss weight
    max_side: int = 128          # images are resized so their longer side is this
    crop_size: int = 97
    test_crop_size: int = 161
    batch_size: int = 8
    iters1: int = 800
    iters2: int = 800
    base_lr: float = 1e-3
    base_lr2: float = 3e-4
    #: (loss weight, sigma_xy, sigma_rgb) candidates for the DenseCRF loss:
    #: on the horses' tuning split, sigma_xy 10-15 with weights near 1e-5 did
    #: best; a kernel of sigma_xy 30 at 5e-6 collapsed the net to one label.
    grid: Sequence[Tuple[float, float, float]] = (
        (1e-5, 10, 10), (2e-5, 10, 10), (8e-6, 15, 10), (1e-5, 15, 8))
    #: Phase-2 regularizers to compare, each tuned on its own grid.
    regularizers: Sequence[str] = ("densecrf",)
    #: (loss weight, sigma_xy, sigma_rgb) candidates for the NCut loss.
    ncut_grid: Sequence[Tuple[float, float, float]] = ((1, 20, 10), (0.5, 30, 10))
    #: loss weights for the size loss; its bounds come from the tuning masks.
    size_grid: Sequence[float] = (100, 1000)


#: The demo's settings (synthetic scenes of about 100 x 130 pixels): two
#: DenseCRF candidates, so that the report shows the tuning step too.
DEMO = dict(iters1=400, iters2=200, base_lr2=3e-4, grid=((3e-6, 30, 15), (5e-6, 30, 10)))


def prepare(src: Path, out: Path, s: Setup) -> Dict[str, List[str]]:
    """Resized images and masks, synthesized scribbles and the list files
    (relative to OUT/data) under ``out``; returns the id split."""
    from PIL import Image
    from .progress import bar

    ids = data.find_ids(src, "SegmentationClass")
    data.list_lines(src, ids, "SegmentationClass")  # refuses names a list cannot hold, up front
    d = out / "data"
    for sub in ("JPEGImages", "SegmentationClass", "scribbles"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    labelled = total = 0
    images = data.image_files(src / "JPEGImages")
    for i in bar(ids, desc="data", unit="img"):
        img = Image.open(src / "JPEGImages" / images[i]).convert("RGB")
        mask = data.load_label(src / "SegmentationClass" / f"{i}.png")
        if mask.shape != (img.height, img.width):
            raise ValueError(f"{i}: image {img.width}x{img.height} and mask "
                             f"{mask.shape[1]}x{mask.shape[0]} differ")
        # Scribbles are drawn on the full-size mask, as a person annotates the
        # photo, then shrink with it: long thin strokes, not short thick ones.
        scr = scribbles.synthesize(mask, s.fraction, rng=scribbles.seed_for(i, s.seed))
        scale = min(1.0, s.max_side / max(img.size))
        if scale < 1:
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            img = img.resize(size, Image.Resampling.BILINEAR)
            mask = np.array(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))
            scr = np.array(Image.fromarray(scr).resize(size, Image.Resampling.NEAREST))
        img.save(d / "JPEGImages" / f"{i}.jpg", quality=95)
        data.save_label(d / "SegmentationClass" / f"{i}.png", mask)
        data.save_label(d / "scribbles" / f"{i}.png", scr)
        labelled += int((scr != 255).sum())
        total += int((mask != 255).sum())
    rest, test = data.split_ids(ids, s.test_fraction, s.seed)
    train, tune = data.split_ids(rest, s.tune_fraction, s.seed + 1)
    split = {"train": train, "tune": tune, "test": test}
    lists = out / "lists"
    lists.mkdir(exist_ok=True)

    # Relative to OUT/data (the nets' root_folder), so that OUT may hold spaces.
    def write(name: str, which: List[str], labels: str) -> None:
        (lists / f"{name}.txt").write_text("".join(
            f"{line}\n" for line in data.list_lines(d, which, labels)))

    write("train_scribbles", train, "scribbles")
    write("train_full", train, "SegmentationClass")
    write("tune", tune, "SegmentationClass")
    write("test", test, "SegmentationClass")
    (out / "split.json").write_text(json.dumps(
        {**split, "labelled_fraction": labelled / max(total, 1)}, indent=1))
    return split


def _exp(out: Path, name: str, s: Setup, train_list: str, **opts: Any) -> config.Experiment:
    o = nets.Options.published(
        s.net, num_labels=opts.pop("num_labels"), crop_size=s.crop_size,
        test_crop_size=s.test_crop_size, batch_size=s.batch_size, data_root=f"{out / 'data'}/",
        train_list=str(out / "lists" / f"{train_list}.txt"),
        test_list=str(out / "lists" / "test.txt"), exp="rloss", **opts)
    sched = dataclasses.replace(nets.SCHEDULES[s.net], base_lr=s.base_lr, base_lr2=s.base_lr2,
                                max_iter=s.iters1, snapshot=max(s.iters1, s.iters2))
    return config.write(s.net, out / "runs" / name, o, sched, "CPU")


def _score(exp: config.Experiment, weights: Path, which: str, out: Path) -> Scores:
    scores, _ = evaluate(predict(exp.file("test"), weights, out / "lists" / f"{which}.txt",
                                 progress=False))
    return scores


def run(src: Path, out: Path, s: Setup, log: Callable[[str], None] = print) -> Dict:
    """All arms; returns (and writes to OUT/results.json) the scores."""
    from .solve import train

    out = Path(out).resolve()
    nets.check_crop(s.net, s.crop_size, "--crop-size")  # before minutes of preparing data
    nets.check_crop(s.net, s.test_crop_size, "--test-crop-size")
    t0 = time.time()
    split = prepare(Path(src), out, s)
    for which in ("tune", "test"):  # before hours of training, not at the scoring
        data.check_fits(out / "lists" / f"{which}.txt", f"{out / 'data'}/", s.test_crop_size,
                        s.test_crop_size, f"raise --test-crop-size to {nets.STRIDES[s.net]}k+1 "
                        "at or above that, or lower --max-side")
    # Over every split: a class seen only in held-out masks must still be a
    # score channel, or scoring them fails once all the training is done.
    k = 1 + max(int(m[m != data.IGNORE].max(initial=0)) for m in (
        data.load_label(out / "data" / "SegmentationClass" / f"{i}.png")
        for ids in split.values() for i in ids))
    if k < 2:
        # One class trains a net with nothing to learn and scores every arm 100 %.
        raise ValueError(f"the masks in {src / 'SegmentationClass'} hold class 0 alone (255 is "
                         "void, never a class): there is nothing to segment. Masks saved as "
                         "0/255 need their foreground stored as 1")
    log(f"{len(split['train'])} training, {len(split['tune'])} tuning, {len(split['test'])} "
        f"held-out images; {k} classes")
    res: Dict = {"setup": dataclasses.asdict(s), "classes": k, "tune": {}, "test": {}}

    pce = _exp(out, "pce", s, "train_scribbles", num_labels=k, regularizer="none")
    w = train(pce, "both", max_iter2=s.iters2, overwrite=True)
    res["weights"] = {"pce_phase1": str(w[1]), "pce": str(w[2])}
    res["tune"]["pce"] = _score(pce, w[2], "tune", out).miou
    res["candidates"], res["chosen"] = {}, {}
    for reg in s.regularizers:
        best = None
        for j, cand in enumerate(_candidates(reg, s, out, split["tune"], k)):
            name = f"{reg}_{j}"
            opts = {key: v for key, v in cand.items() if key != "regularizer"}
            e = _exp(out, name, s, "train_scribbles", num_labels=k, regularizer=reg,
                     densecrf_weight=opts.pop("weight"), **opts)
            wj = train(e, "2", weights=w[1], max_iter2=s.iters2, overwrite=True)[2]
            m = _score(e, wj, "tune", out).miou
            res["tune"][name] = m
            res["candidates"][name] = {**cand, "weights": str(wj)}
            log(f"tuning {name} ({_describe(cand)}): mIoU {100 * m:.1f} on the tuning split "
                f"(pCE {100 * res['tune']['pce']:.1f})")
            if best is None or m > res["tune"][best]:
                best = name
        res["chosen"][reg] = best
        res["weights"][reg] = res["candidates"][best]["weights"]
    full = _exp(out, "full", s, "train_full", num_labels=k, regularizer="none")
    res["weights"]["full"] = str(train(full, "both", max_iter2=s.iters2, overwrite=True)[2])
    for arm in ("pce", *s.regularizers, "full"):
        sc = _score(pce, Path(res["weights"][arm]), "test", out)
        res["test"][arm] = {"miou": sc.miou, "pixel_accuracy": sc.pixel_accuracy,
                            "iou": [None if np.isnan(v) else float(v) for v in sc.iou]}
    t = res["test"]
    gap = t["full"]["miou"] - t["pce"]["miou"]
    res["gap_closed"] = {reg: (t[reg]["miou"] - t["pce"]["miou"]) / gap if gap > 0 else None
                         for reg in s.regularizers}
    res["minutes"] = (time.time() - t0) / 60
    (out / "results.json").write_text(json.dumps(res, indent=1))
    return res


def size_bounds(out: Path, ids: Sequence[str], k: int) -> Tuple[List[float], List[float]]:
    """Per-class size bounds (fractions of the image) from the tuning masks:
    their range over the tuning images, widened by 10 %."""
    fr = np.array([[np.mean(m == c) for c in range(k)] for m in (
        data.load_label(out / "data" / "SegmentationClass" / f"{i}.png") for i in ids)])
    lower = [round(float(max(0.0, v * 0.9)), 4) for v in fr.min(0)]
    upper = [round(float(min(1.0, v * 1.1)), 4) for v in fr.max(0)]
    return lower, upper


def _candidates(reg: str, s: Setup, out: Path, tune: Sequence[str], k: int) -> List[Dict]:
    if reg in ("densecrf", "ncut"):
        grid = s.grid if reg == "densecrf" else s.ncut_grid
        return [dict(regularizer=reg, weight=w, bi_xy_std=xy, bi_rgb_std=rgb)
                for w, xy, rgb in grid]
    if reg == "size":
        lower, upper = size_bounds(out, tune, k)
        return [dict(regularizer=reg, weight=w, size_lower=lower, size_upper=upper)
                for w in s.size_grid]
    raise ValueError(f"unknown regularizer {reg!r}; choose densecrf, ncut or size")


def _describe(c: Dict) -> str:
    if c["regularizer"] == "size":
        return (f"weight {c['weight']:g}, bounds "
                + ", ".join(f"[{a:g}, {b:g}]" for a, b in zip(c["size_lower"], c["size_upper"])))
    return f"weight {c['weight']:g}, σxy {c['bi_xy_std']:g}, σrgb {c['bi_rgb_std']:g}"


NAMES = {"densecrf": "pCE + DenseCRF", "ncut": "pCE + Normalized Cut", "size": "pCE + size"}


def table(res: Dict) -> str:
    t, regs = res["test"], res["setup"]["regularizers"]
    rows = [("pCE (scribbles)", t["pce"])]
    for reg in regs:
        c = res["candidates"][res["chosen"][reg]]
        rows.append((f"{NAMES[reg]} (scribbles; {_describe(c)})", t[reg]))
    rows.append(("full supervision (masks)", t["full"]))
    text = "| training | mIoU | pixel accuracy |\n|---|---:|---:|\n"
    text += "".join(f"| {n} | {100 * r['miou']:.1f} | {100 * r['pixel_accuracy']:.1f} |\n"
                    for n, r in rows)
    text += "\n"
    for reg in regs:
        g = res["gap_closed"][reg]
        text += f"{NAMES[reg][6:]} closes " + (
            f"**{100 * g:.0f} %** of the pCE → full-supervision gap.\n" if g is not None
            else "no gap: pCE is not below full supervision here.\n")
    return text


def _curves(out: Path, res: Dict, png: Path) -> Path:
    """Training losses of every arm on one figure."""
    from .visualize import _save, _smooth, plt, read_csv

    regs = res["setup"]["regularizers"]
    fig, axes = plt.subplots(1, 1 + len(regs), figsize=(5.5 * (1 + len(regs)), 3.6),
                             squeeze=False)
    a = axes[0][0]
    offset = 0
    arms = [("pce", "pCE", "pce")] + [(res["chosen"][r], NAMES[r], r) for r in regs] \
        + [("full", "full masks", "full")]
    for j, (folder, label, key) in enumerate(arms):
        rows = read_csv(out / "runs" / folder / "log" / "train.csv")
        p1 = sum(1 for r in rows if r["phase"] == "1")
        offset = p1 or offset  # phase-2-only runs start where phase 1 ended
        xs = np.array([float(r["iter"]) + (offset if r["phase"] == "2" else 0) for r in rows])
        ce = np.array([float(r["softmax_loss"]) for r in rows])
        a.plot(xs, _smooth(ce, 15), color=f"C{j}", label=label)
        if key in regs:
            top = {"densecrf": "densecrf_loss", "ncut": "ncut_loss", "size": "size_loss"}[key]
            ax = axes[0][1 + regs.index(key)]
            ax.plot(xs, _smooth(np.array([float(r[top]) for r in rows]), 15), color=f"C{j}")
            ax.set_title(f"{top} (unweighted) in phase 2")
    a.set_title("cross-entropy on the labelled pixels (smoothed)")
    a.set_yscale("log")
    a.legend(fontsize=8)
    for ax in axes[0]:
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.axvline(offset, color="grey", lw=0.8, ls="--")
    return _save(fig, png)


def report(res: Dict, out: Path, title: str, command: str, n_images: int = 6) -> Path:
    """OUT/report.md with the table, loss curves, a prediction grid and the
    DenseCRF gradient of one held-out image."""
    from .gradient import densecrf_layer, feed_of_net, predict_image
    from .visualize import gradient_grid, image_grid

    out = Path(out)
    figs = out / "figures"
    split = json.loads((out / "split.json").read_text())
    d = out / "data"
    test_net = out / "runs" / "pce" / "config" / "test.prototxt"
    meta = json.loads((out / "runs" / "pce" / "config" / "rloss.json").read_text())
    stride = meta["stride"]
    regs = list(res["setup"]["regularizers"])
    arms = ["pce"] + regs + ["full"]
    rows, names = [], split["test"][:n_images]
    for i in names:
        rgb = data.load_image(d / "JPEGImages" / f"{i}.jpg")
        row = [rgb, data.load_label(d / "scribbles" / f"{i}.png")]
        for arm in arms:
            row.append(predict_image(test_net, Path(res["weights"][arm]), rgb,
                                     stride).argmax(0).astype(np.uint8))
        row.append(data.load_label(d / "SegmentationClass" / f"{i}.png"))
        rows.append(row)
    image_grid(rows, ["image", "scribbles", "pCE"] + [NAMES[r] for r in regs]
               + ["full masks", "truth"], figs / "predictions.png", row_titles=names)
    _curves(out, res, figs / "loss_curves.png")
    tune = "\n".join(
        f"| {n} | {_describe(res['candidates'][n]) if n in res['candidates'] else 'pCE alone'}"
        f" | {100 * m:.1f} |" for n, m in res["tune"].items())
    gradient = ""
    if "densecrf" in regs:
        c = res["candidates"][res["chosen"]["densecrf"]]
        rgb = data.load_image(d / "JPEGImages" / f"{names[0]}.jpg")
        prob = predict_image(test_net, Path(res["weights"]["pce_phase1"]), rgb, stride)
        loss, grad = densecrf_layer(feed_of_net(test_net).net_input(rgb), prob, c["bi_xy_std"],
                                    c["bi_rgb_std"])
        gradient_grid(rgb, prob, grad, figs / "gradient.png",
                      title=f"{names[0]}: the pCE model's output and the DenseCRF gradient "
                            f"(σxy {c['bi_xy_std']:g}, σrgb {c['bi_rgb_std']:g})")
        gradient = f"""
## What the DenseCRF loss asks of the net

Per class: the pCE model's probability, the gradient the DenseCRF loss layer
sends back (−2WS: largest where similar-looking nearby pixels already agree on
the class), and that gradient through the softmax to the scores (blue: raise
this class here; red: lower it). Loss {loss:.4g}.

![gradient](figures/gradient.png)
"""
    s = res["setup"]
    text = f"""# {title}

Command: `{command}`

{len(split['train'])} training images with synthesized scribbles
({100 * split['labelled_fraction']:.1f} % of pixels labelled), {len(split['tune'])} tuning
images, {len(split['test'])} held-out test images; net `{s['net']}`, crop {s['crop_size']},
batch {s['batch_size']}; phase 1 {s['iters1']} iterations, phase 2 {s['iters2']}
(every arm gets both; the regularized arms start phase 2 from pCE's phase 1).
Wall time {res['minutes']:.1f} min on this machine.

## Held-out test images

{table(res)}
## Tuning (phase 2 candidates, scored on the tuning images)

| run | settings | tuning mIoU |
|---|---|---:|
{tune}

## Predictions

![predictions](figures/predictions.png)

## Loss curves

![loss curves](figures/loss_curves.png)
{gradient}"""
    path = out / "report.md"
    path.write_text(text)
    return path
