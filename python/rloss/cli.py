"""`rloss`: one command line for training from scribbles in Caffe.

Subcommands import pycaffe only when they need it, so the data tools
(scribbles, lists, parse-log) run without a Caffe build.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, NoReturn, Optional, Sequence, TypeVar

if TYPE_CHECKING:  # imported where used: it pulls in Caffe
    from .experiment import Setup

T = TypeVar("T")


def _die(msg: str) -> NoReturn:
    print(f"rloss: error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def _checked(kind: Callable[[str], T], ok: Callable[[T], bool], what: str) -> Callable[[str], T]:
    """An argparse type that refuses a value unless ``ok``, so a bad option
    stops the command with a usage error before any work, not a traceback
    halfway through. The checks are written so that NaN fails them."""
    def parse(text: str) -> T:
        refusal = argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        try:
            value = kind(text)
        except ValueError:
            raise refusal from None
        if not ok(value):
            raise refusal
        return value
    return parse


POSITIVE_INT = _checked(int, lambda v: v > 0, "a positive integer")
COUNT = _checked(int, lambda v: v >= 0, "an integer, 0 or more")
LABELS = _checked(int, lambda v: 2 <= v <= 255, "2 to 255 classes (label 255 means unlabelled)")
POSITIVE = _checked(float, lambda v: 0 < v < math.inf, "a positive number")
NON_NEGATIVE = _checked(float, lambda v: 0 <= v < math.inf, "a number, 0 or more")
FINITE = _checked(float, math.isfinite, "a finite number")
FRACTION = _checked(float, lambda v: 0 < v <= 1, "a fraction in (0, 1]")
UNIT = _checked(float, lambda v: 0 <= v <= 1, "a fraction in [0, 1]")
HOLDOUT = _checked(float, lambda v: 0 <= v < 1, "a fraction in [0, 1)")
SECONDS = _checked(float, lambda v: v >= 0, "a number of seconds, 0 or more")


def _add(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_: str,
         example: str, func: Optional[Callable[[argparse.Namespace], None]]
         ) -> argparse.ArgumentParser:
    epilog = "example:\n" + textwrap.indent(textwrap.dedent(example).strip(), "  ")
    p = sub.add_parser(name, help=help_, description=help_, epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    if func is not None:
        p.set_defaults(func=func)
    return p


# ---------------------------------------------------------------- prototxt
def cmd_prototxt(a: argparse.Namespace) -> None:
    from . import config, nets

    opts = nets.Options.published(a.net)
    over = dict(num_labels=a.num_labels, crop_size=a.crop_size, test_crop_size=a.test_crop_size,
                batch_size=a.batch_size, densecrf_weight=a.densecrf_weight,
                bi_xy_std=a.bi_xy_std, bi_rgb_std=a.bi_rgb_std, scale_factor=a.scale_factor,
                exp=a.exp_name or "pascal_scribble", regularizer=a.regularizer)
    over = {k: v for k, v in over.items() if v is not None}
    if a.mean is not None:
        over["mean"] = tuple(a.mean)
    if a.regularizer == "size":
        if not (a.size_lower or a.size_upper):
            _die("--regularizer size needs --size-lower and/or --size-upper (fractions)")
        # What SizeLoss would refuse only once training had started.
        k = over.get("num_labels", opts.num_labels)
        for flag, given in (("--size-lower", a.size_lower), ("--size-upper", a.size_upper)):
            if given and len(given) not in (1, k):
                _die(f"{flag} gives {len(given)} values for {k} classes; give one (for every "
                     f"class) or {k}")
        lower, upper = a.size_lower or [0.0], a.size_upper or [1.0]
        for c in range(k):
            lo, up = lower[c % len(lower)], upper[c % len(upper)]
            if lo > up:
                _die(f"class {c}: --size-lower {lo:g} is above --size-upper {up:g}")
        over["size_lower"] = tuple(a.size_lower or ())
        over["size_upper"] = tuple(a.size_upper or ())
    root = Path(a.data_root).resolve() if a.data_root else None
    if root is not None and not root.is_dir():
        _die(f"--data-root {a.data_root} is not a folder")
    over["data_root"] = f"{root}/" if root else ""
    for key, given in (("train_list", a.train_list), ("test_list", a.test_list)):
        path = Path(given) if given else (root / "list" / ("train.txt" if key == "train_list"
                                                           else "val.txt") if root else None)
        if path is None:
            _die(f"give --{key.replace('_', '-')} "
                 "(or --data-root with list/train.txt, list/val.txt)")
        if not path.is_file():
            _die(f"list file {path} does not exist; make one with `rloss lists`")
        over[key] = str(path.resolve())
    try:
        nets.check_crop(a.net, over.get("crop_size", opts.crop_size), "--crop-size")
        nets.check_crop(a.net, over.get("test_crop_size", opts.test_crop_size),
                        "--test-crop-size")
    except ValueError as e:
        _die(str(e))
    opts = nets.Options.published(a.net, **over)
    sched = nets.SCHEDULES[a.net]
    for k in ("base_lr", "base_lr2", "max_iter", "stepsize", "snapshot"):
        if getattr(a, k) is not None:
            setattr(sched, k, getattr(a, k))
    exp = config.write(a.net, Path(a.out), opts, sched, a.solver_mode)
    for f in sorted(exp.config.iterdir()):
        print(f)


# ---------------------------------------------------------------- train
def cmd_train(a: argparse.Namespace) -> None:
    from .config import Experiment
    from .solve import train

    exp = Experiment(a.exp)
    try:
        done = train(exp, a.phase, Path(a.weights) if a.weights else None, a.resume,
                     a.max_iter, a.max_iter2, a.snapshot, progress=not a.quiet,
                     overwrite=a.overwrite)
    except KeyboardInterrupt:
        raise SystemExit(130)
    except (FileNotFoundError, FloatingPointError, ValueError) as e:
        _die(str(e))
    for phase, path in done.items():
        print(f"phase {phase}: {path}")
    print(f"log: {exp.log / 'train.csv'}\ncurves: {exp.log / 'loss_curves.png'}")


# ---------------------------------------------------------------- eval
def _read_classes(a: argparse.Namespace) -> Optional[List[str]]:
    """--classes, read before any model runs: a missing or binary file
    should not cost a pass over the list."""
    from .data import read_text
    if not getattr(a, "classes", None):
        return None
    try:
        text = read_text(Path(a.classes))
    except ValueError as e:
        _die(str(e))
    return [line.strip() for line in text.splitlines() if line.strip()]


def _classes(a: argparse.Namespace, named: Optional[List[str]], k: int) -> List[str]:
    from .data import VOC_CLASSES
    if named is not None:
        if len(named) != k:
            _die(f"{a.classes} names {len(named)} classes; the scores have {k}")
        return named
    return list(VOC_CLASSES) if k == 21 else [f"class {i}" for i in range(k)]


def cmd_eval(a: argparse.Namespace) -> None:
    import numpy as np
    from .data import save_label
    from .evaluate import evaluate, predict, table
    from .visualize import confusion_figure, image_grid

    named = _read_classes(a)
    net, weights = a.net, a.weights
    if a.exp:
        from .config import Experiment
        from .solve import final_weights
        exp = Experiment(a.exp)
        try:
            _ = exp.meta  # a folder without config/rloss.json is refused here, by name
        except ValueError as e:
            _die(str(e))
        net = net or exp.file("test")
        if not weights:
            weights = [str(final_weights(exp, p)) for p in (1, 2)
                       if any(exp.model.glob(f"{exp.prefix(p).name}_iter_*.caffemodel"))]
    if not net or not weights:
        _die("give --exp, or --net TEST_PROTOTXT with --weights MODEL [MODEL ...]")
    names = a.names or [Path(w).stem for w in weights]
    if len(names) != len(weights):
        _die(f"{len(names)} --names for {len(weights)} --weights")
    twice = [n for i, n in enumerate(names) if n in names[:i]]
    if twice:
        _die(f"two models are named {twice[0]!r}; their files in --out and their columns would "
             "be one model's. Give each its own --names")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results, kept = [], []
    for w, name in zip(weights, names):
        try:
            preds = predict(Path(net), Path(w), a.list, a.data_root, progress=not a.quiet)
            scores, keep = evaluate(preds, a.num_labels, keep=True)
        except (FileNotFoundError, KeyError, ValueError) as e:
            _die(str(e))
        results.append(scores)
        kept.append(keep)
        k = scores.confusion.shape[0]
        confusion_figure(scores.confusion, scores.iou, _classes(a, named, k),
                         out / f"{name}_confusion.png", title=name)
        np.savetxt(out / f"{name}_confusion.csv", scores.confusion, fmt="%d", delimiter=",")
        if a.save_predictions:
            for p in keep:
                save_label(out / name / f"{p.name}.png", p.prob.argmax(0))
    k = results[0].confusion.shape[0]
    text = table(results, names, _classes(a, named, k))
    (out / "metrics.md").write_text(text)
    print(text, end="")
    n = min(a.grid, len(kept[0]))
    if n:
        rows = [[kept[0][i].image, kept[0][i].label] + [kp[i].prob.argmax(0).astype(np.uint8)
                                                        for kp in kept] for i in range(n)]
        image_grid(rows, ["image", "label"] + list(names), out / "predictions.png",
                   row_titles=[kept[0][i].name for i in range(n)])
    print(f"wrote {out}/metrics.md, *_confusion.png" + (", predictions.png" if n else ""))


# ---------------------------------------------------------------- visualize-gradient
def cmd_gradient(a: argparse.Namespace) -> None:
    import dataclasses
    import numpy as np
    from .data import Feed, load_image
    from .gradient import densecrf_layer, feed_of_net, predict_image
    from .visualize import gradient_grid

    named = _read_classes(a)
    rgb = load_image(Path(a.image))
    xy, srgb, sf = a.bi_xy_std, a.bi_rgb_std, a.scale_factor
    if a.exp:
        from .config import Experiment
        from .solve import final_weights
        exp = Experiment(a.exp)
        try:
            meta = exp.meta
        except ValueError as e:
            _die(str(e))
        xy = xy or meta["options"]["bi_xy_std"]
        srgb = srgb or meta["options"]["bi_rgb_std"]
        sf = sf or meta["options"].get("scale_factor", 1.0)
        a.net = a.net or str(exp.file("test"))
        a.weights = a.weights or str(final_weights(exp, 1))
        stride = meta["stride"]
    else:
        stride = a.stride
    xy, srgb, sf = xy or 100.0, srgb or 15.0, sf or 1.0
    # The image as the net's data layer feeds it: its scores and the image the
    # loss filters both depend on the mean, the scale and the channels.
    try:
        feed = feed_of_net(Path(a.net)) if a.net else Feed()
    except ValueError as e:
        _die(str(e))
    if a.mean:
        try:
            feed = dataclasses.replace(feed, mean=tuple(a.mean))
        except ValueError as e:
            _die(f"--mean: {e}")
    if a.prob:
        try:
            loaded = np.load(a.prob)  # no pickles: a .npy is data, not code
        except (ValueError, EOFError) as e:
            _die(f"{a.prob} is not a .npy file numpy can read ({e})")
        if not isinstance(loaded, np.ndarray) or loaded.dtype.kind not in "biuf":
            _die(f"{a.prob} holds no numeric array; save one K x H x W array with numpy.save")
        prob = loaded.astype(np.float32)
        if prob.ndim != 3 or prob.shape[1:] != rgb.shape[:2]:
            _die(f"{a.prob} holds {prob.shape}; expected K x {rgb.shape[0]} x {rgb.shape[1]}")
        if np.any(prob < 0) or not np.allclose(prob.sum(0), 1, atol=1e-3):
            _die(f"{a.prob} is not a probability map (each pixel must sum to 1 over K)")
    elif a.net and a.weights:
        try:
            prob = predict_image(Path(a.net), Path(a.weights), rgb, stride, feed)
        except (KeyError, ValueError) as e:
            _die(str(e).strip("'\""))
    else:
        _die("give --prob FILE.npy, --exp, or --net with --weights")
    image = feed.net_input(rgb)
    loss, grad = densecrf_layer(image, prob, xy, srgb, sf)
    k = prob.shape[0]
    png = gradient_grid(feed.pixels(image), prob, grad, Path(a.out), _classes(a, named, k),
                        title=f"DenseCRF loss {loss:.4g} (σxy {xy:g}, σrgb {srgb:g}"
                        + (f", scale_factor {sf:g})" if sf != 1 else ")"))
    print(f"loss {loss:.6g}; wrote {png}")


# ---------------------------------------------------------------- scribbles
def cmd_convert(a: argparse.Namespace) -> None:
    from .progress import bar
    from .data import save_label
    from .scribbles import convert, read_mapping

    files: List[Path] = []
    for src in a.xml:
        p = Path(src)
        files.extend(sorted(p.glob("*.xml")) if p.is_dir() else [p])
    missing = [str(f) for f in files if not f.is_file()]
    if missing or not files:
        _die(f"no such XML file(s): {', '.join(missing) or ' '.join(a.xml)}")
    try:
        mapping = read_mapping(Path(a.mapping)) if a.mapping else None
    except (OSError, ValueError) as e:
        _die(str(e))
    out = Path(a.out)
    labelled = total = 0
    for f in bar(files, desc="convert", unit="file", disable=a.quiet):
        try:
            lab = convert(f, mapping, a.thickness)
        except (KeyError, ValueError) as e:
            _die(str(e).strip("'\""))
        save_label(out / f"{f.stem}.png", lab)
        labelled += int((lab != 255).sum())
        total += lab.size
    print(f"wrote {len(files)} label PNGs to {out}; {100 * labelled / max(total, 1):.2f} % of "
          "pixels labelled")


def cmd_synthesize(a: argparse.Namespace) -> None:
    import numpy as np
    from .progress import bar
    from .data import image_files, load_image, load_label, save_label
    from .scribbles import seed_for, synthesize
    from .visualize import image_grid

    masks = sorted(Path(a.masks).glob("*.png"))
    if not masks:
        _die(f"no PNG masks in {a.masks}")
    images: Dict[str, Path] = {}
    if a.images:
        from PIL import Image
        if not Path(a.images).is_dir():
            _die(f"no image folder {a.images}")
        try:
            images = {i: Path(a.images) / f for i, f in image_files(Path(a.images)).items()}
        except ValueError as e:
            _die(str(e))
        for m in masks:  # headers only; ImageSegData would stop on this much later
            if m.stem in images:
                with Image.open(m) as mi, Image.open(images[m.stem]) as ii:
                    if mi.size != ii.size:
                        _die(f"{m} is {mi.size[0]}x{mi.size[1]} but its image "
                             f"{images[m.stem]} is {ii.size[0]}x{ii.size[1]}; a mask and "
                             "its image must be the same size")
    out = Path(a.out)
    labelled = total = 0
    preview: List[List[np.ndarray]] = []
    for m in bar(masks, desc="synthesize", unit="mask", disable=a.quiet):
        mask = load_label(m)
        s = synthesize(mask, a.fraction, a.thickness, a.strokes, a.min_area,
                       seed_for(m.stem, a.seed))
        save_label(out / m.name, s)
        labelled += int((s != 255).sum())
        total += int((mask != 255).sum())
        if len(preview) < 4:
            row = [mask, s]
            if a.images:
                grey = np.full(mask.shape + (3,), 128, np.uint8)
                row = [load_image(images[m.stem]) if m.stem in images else grey] + row
            preview.append(row)
    frac = labelled / max(total, 1)
    cols = (["image"] if a.images else []) + ["mask", "scribbles"]
    image_grid(preview, cols, out.parent / f"{out.name}_preview.png")
    print(f"wrote {len(masks)} scribble PNGs to {out}: {100 * frac:.2f} % of pixels labelled "
          f"(target {100 * a.fraction:.1f} %); preview {out.parent / (out.name + '_preview.png')}")


# ---------------------------------------------------------------- lists
def cmd_lists(a: argparse.Namespace) -> None:
    from .data import read_text, write_lists

    ids = None
    try:
        if a.ids:
            ids = [line.split()[0] for line in read_text(Path(a.ids)).splitlines()
                   if line.strip()]
        train, val = write_lists(Path(a.data), Path(a.out or Path(a.data) / "list"), a.labels,
                                 a.val_fraction, a.seed, a.val_labels, ids)
    except (FileNotFoundError, ValueError) as e:
        _die(str(e))
    for p in (train, val):
        print(f"{p}: {len(p.read_text().splitlines())} images")


# ---------------------------------------------------------------- parse-log
def cmd_parse_log(a: argparse.Namespace) -> None:
    from .logs import parse, write_csv
    from .visualize import loss_curves

    rows = []
    for i, log in enumerate(a.logs, start=1):
        if not Path(log).is_file():
            _die(f"no log file {log}")
        rows.extend(parse(Path(log).read_text(errors="replace"), phase=str(i)))
    train_rows = [r for r in rows if r["phase"] not in ("test", "batch")]
    if not rows:
        _die("no Caffe iteration or test lines found; is this glog output of `caffe train`?")
    out = Path(a.out)
    csv_path = write_csv(rows, out.with_suffix(".csv"))
    print(f"wrote {csv_path} ({len(train_rows)} training iterations logged)")
    if train_rows:
        write_csv(train_rows, out.with_suffix(".train.csv"))
        png = loss_curves(out.with_suffix(".train.csv"), out.with_suffix(".png"))
        out.with_suffix(".train.csv").unlink()
        print(f"wrote {png}")
    batches = [r for r in rows if r["phase"] == "batch"]
    if batches:
        last = {k: v for k, v in batches[-1].items() if k not in ("phase", "iter")}
        print(f"caffe test, last batch ({batches[-1]['iter']}): "
              + ", ".join(f"{k} = {v:.4f}" for k, v in last.items()))


# ---------------------------------------------------------------- experiment, demo
def _setup(a: argparse.Namespace, **base: Any) -> Setup:
    from .experiment import Setup

    s = Setup(**base)
    for k in ("net", "fraction", "seed", "max_side", "crop_size", "test_crop_size",
              "batch_size", "iters1", "iters2", "base_lr", "base_lr2"):
        if getattr(a, k, None) is not None:
            setattr(s, k, getattr(a, k))
    if getattr(a, "regularizers", None):
        s.regularizers = tuple(a.regularizers)
    if getattr(a, "grid", None):
        grids: dict = {"densecrf": [], "ncut": [], "size": []}
        for g in a.grid:
            reg, _, vals = g.rpartition(":")
            reg = reg or "densecrf"
            try:
                t = tuple(float(v) for v in vals.split(","))
            except ValueError:
                t = ()
            if (reg not in grids or len(t) != (1 if reg == "size" else 3)
                    or not all(0 < v < math.inf for v in t)):
                _die(f"--grid entry {g!r}: give WEIGHT,SIGMA_XY,SIGMA_RGB (DenseCRF), "
                     "ncut:WEIGHT,SIGMA_XY,SIGMA_RGB or size:WEIGHT, all positive")
            grids[reg].append(t)
        s.grid = grids["densecrf"] or s.grid
        s.ncut_grid = grids["ncut"] or s.ncut_grid
        s.size_grid = [t[0] for t in grids["size"]] or s.size_grid
    return s


def _run_and_report(a: argparse.Namespace, src: Path, s: Setup, title: str) -> None:
    from .experiment import report, run, table

    out = Path(a.out)
    try:
        res = run(src, out, s, log=lambda m: print(m, flush=True))
    except (FileNotFoundError, ValueError) as e:
        _die(str(e))
    path = report(res, out, title, "rloss " + " ".join(sys.argv[1:]))
    print("\n" + table(res) + f"\nreport: {path} ({res['minutes']:.1f} min)")


def cmd_experiment(a: argparse.Namespace) -> None:
    src = Path(a.data)
    if not (src / "JPEGImages").is_dir() or not (src / "SegmentationClass").is_dir():
        _die(f"{src} needs JPEGImages/ and SegmentationClass/ (full masks)")
    _run_and_report(a, src, _setup(a), f"Scribbles vs full masks on {src.name}")


def cmd_demo(a: argparse.Namespace) -> None:
    from .experiment import DEMO
    from .synthetic import make_dataset

    out = Path(a.out)
    src = out / "scenes"
    print(f"making {a.images} synthetic scenes in {src}", flush=True)
    make_dataset(src, a.images, seed=a.seed if a.seed is not None else 0)
    _run_and_report(a, src, _setup(a, **DEMO), "rloss demo: scribbles, DenseCRF loss, full masks")


def cmd_bench(a: argparse.Namespace) -> None:
    from . import bench

    lines = bench.run(Path(a.out), a.sizes, a.classes, a.batches, a.threads, a.reps,
                      min_seconds=a.min_seconds)
    print()
    print("\n".join(lines))
    print(f"\nwrote {a.out}/bench.md, bench.csv, bench.png")


# ---------------------------------------------------------------- parser
def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="rloss", description="Train segmentation nets from scribbles with regularized "
        "losses (DenseCRF) in Caffe.", formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `rloss COMMAND --help` for a command's options and an example.")
    ap.add_argument("-v", "--verbose", action="store_true", help="show Caffe's log")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _add(sub, "prototxt", "generate train/test nets and solvers for both phases", """
        rloss prototxt --net small --data-root data/ --num-labels 2 --crop-size 97 \\
            --batch-size 8 --solver-mode CPU --out exp/""", cmd_prototxt)
    p.add_argument("--net", default="deeplab_largeFOV",
                   choices=["deeplab_largeFOV", "deeplab_msc_largeFOV", "deeplab_vgg16",
                            "resnet-101", "small"])
    p.add_argument("--out", required=True, help="experiment folder (files go to OUT/config)")
    p.add_argument("--data-root", help="ImageSegData root_folder; default lists: "
                   "DATA_ROOT/list/{train,val}.txt")
    p.add_argument("--train-list", help="list of 'image label' lines for training")
    p.add_argument("--test-list", help="list for the test net")
    p.add_argument("--num-labels", type=LABELS, help="classes, background included (default 21)")
    p.add_argument("--crop-size", type=POSITIVE_INT,
                   help="training crop, stride*k+1 pixels (default 321)")
    p.add_argument("--test-crop-size", type=POSITIVE_INT,
                   help="test crop, stride*k+1 pixels (default 513)")
    p.add_argument("--batch-size", type=POSITIVE_INT, help="default: the release's for the net")
    p.add_argument("--mean", type=FINITE, nargs=3, metavar=("B", "G", "R"),
                   help="mean subtracted from the image, BGR (default VOC's)")
    p.add_argument("--densecrf-weight", type=POSITIVE,
                   help="phase 2 regularizer's loss weight (default 1e-8)")
    p.add_argument("--bi-xy-std", type=POSITIVE, help="σxy (default 100; 80 for resnet-101)")
    p.add_argument("--bi-rgb-std", type=POSITIVE, help="σrgb (default 15; 13 for resnet-101)")
    p.add_argument("--scale-factor", type=FRACTION, help="DenseCRF loss resolution (default 1)")
    p.add_argument("--regularizer", default="densecrf",
                   choices=["densecrf", "ncut", "size", "none"],
                   help="phase 2's extra loss: the DenseCRF loss, Normalized Cut on the same "
                   "kernel, a size constraint, or none (pCE alone)")
    p.add_argument("--size-lower", type=UNIT, nargs="+", metavar="F",
                   help="size regularizer: lower bounds, fractions of the image (one, or "
                   "one per class)")
    p.add_argument("--size-upper", type=UNIT, nargs="+", metavar="F",
                   help="size regularizer: upper bounds, fractions of the image")
    p.add_argument("--solver-mode", default="CPU", choices=["CPU", "GPU"])
    p.add_argument("--exp-name", help="suffix of the classifier's name fc8_<name> "
                   "(default 'pascal_scribble'); a new name re-initialises it from --weights")
    p.add_argument("--base-lr", type=NON_NEGATIVE, help="phase 1 (default 1e-3)")
    p.add_argument("--base-lr2", type=NON_NEGATIVE, help="phase 2 (default 1e-4)")
    p.add_argument("--max-iter", type=POSITIVE_INT, help="per phase (default 9000)")
    p.add_argument("--stepsize", type=POSITIVE_INT,
                   help="lr x 0.1 every STEPSIZE iterations (default 3000)")
    p.add_argument("--snapshot", type=COUNT, help="snapshot every N iterations (default 1000)")

    p = _add(sub, "train", "train phase 1 (pCE) and/or phase 2 (pCE + DenseCRF) with pycaffe", """
        rloss train --exp exp/ --phase both --weights init.caffemodel
        rloss train --exp exp/ --resume          # after Ctrl-C""", cmd_train)
    p.add_argument("--exp", required=True, help="experiment folder made by `rloss prototxt`")
    p.add_argument("--phase", choices=["1", "2", "both"], default="both")
    p.add_argument("--weights", help="initial caffemodel (phase 1; phase 2 when run alone)")
    fresh = p.add_mutually_exclusive_group()
    fresh.add_argument("--resume", action="store_true", help="continue from the latest snapshots")
    fresh.add_argument("--overwrite", action="store_true",
                       help="delete an earlier run's snapshots of the phases trained (and of "
                       "phase 2 when phase 1 is retrained) and train afresh")
    p.add_argument("--max-iter", type=POSITIVE_INT, help="override the solvers' max_iter")
    p.add_argument("--max-iter2", type=POSITIVE_INT, help="override max_iter of phase 2 only")
    p.add_argument("--snapshot", type=COUNT, help="override the snapshot interval")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    p = _add(sub, "eval", "score models over a list: per-class IoU, mIoU, pixel accuracy", """
        rloss eval --exp exp/ --out exp/eval               # both phases' final models
        rloss eval --net exp/config/test.prototxt --weights a.caffemodel b.caffemodel \\
            --names pCE DenseCRF --list data/list/val.txt --out eval/ --save-predictions""",
             cmd_eval)
    p.add_argument("--exp", help="experiment folder: its test net and final snapshots")
    p.add_argument("--net", help="test prototxt (ImageSegData + fc8_interp)")
    p.add_argument("--weights", nargs="+", help="one or more caffemodels, compared side by side")
    p.add_argument("--names", nargs="+", help="a column name per model")
    p.add_argument("--list", help="evaluate this list instead of the test net's")
    p.add_argument("--data-root", help="root folder for --list")
    p.add_argument("--num-labels", type=LABELS,
                   help="default: the net's output channels (more is allowed, fewer is refused)")
    p.add_argument("--classes", help="file with one class name per line")
    p.add_argument("--out", default="eval", help="folder for the table, figures, predictions")
    p.add_argument("--save-predictions", action="store_true",
                   help="write palette PNGs of the predictions (OUT/<name>/<image>.png)")
    p.add_argument("--grid", type=COUNT, default=6, help="images in predictions.png (0: none)")
    p.add_argument("-q", "--quiet", action="store_true")

    p = _add(sub, "visualize-gradient", "per-class probabilities and the DenseCRF loss "
             "gradient of one image, as a PNG grid", """
        rloss visualize-gradient --image horse001.jpg --exp exp/ --out grad.png
        rloss visualize-gradient --image im.jpg --prob prob.npy --bi-xy-std 50 --out grad.png""",
             cmd_gradient)
    p.add_argument("--image", required=True)
    p.add_argument("--exp", help="experiment folder (test net, phase 1 model, σ's, mean)")
    p.add_argument("--net", help="test prototxt")
    p.add_argument("--weights", help="caffemodel")
    p.add_argument("--prob", help="K x H x W probabilities (.npy) instead of a model")
    p.add_argument("--stride", type=POSITIVE_INT, default=8,
                   help="the net's output stride (with --net)")
    p.add_argument("--mean", type=FINITE, nargs="+", metavar="V",
                   help="mean to subtract, B G R or one value (default: the test net's "
                   "data layer's, and its scale and channels; without a net, VOC's)")
    p.add_argument("--bi-xy-std", type=POSITIVE)
    p.add_argument("--bi-rgb-std", type=POSITIVE)
    p.add_argument("--scale-factor", type=FRACTION, help="default: the experiment's, or 1")
    p.add_argument("--classes", help="file with one class name per line")
    p.add_argument("--out", default="gradient.png")

    p = _add(sub, "scribbles", "scribble labels: convert ScribbleSup XML or synthesize from masks",
             """
        rloss scribbles convert scribble_annotation/pascal_2012/ --out pascal_2012_scribble/
        rloss scribbles synthesize --masks SegmentationClass/ --out scribbles/""", None)
    ss = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = _add(ss, "convert", "ScribbleSup XML to label PNGs (255 = unlabelled), strokes 3 px wide",
             """
        rloss scribbles convert pascal_2012/ --out pascal_2012_scribble/
        rloss scribbles convert ctx/*.xml --mapping context_tags.txt --out ctx_scribble/""",
             cmd_convert)
    q.add_argument("xml", nargs="+", help="XML files or folders of them")
    q.add_argument("--out", required=True)
    q.add_argument("--mapping", help="'tag index' per line, or one tag per line (numbered "
                   "from 0), for tags beyond VOC's 21")
    q.add_argument("--thickness", type=POSITIVE_INT, default=3)
    q.add_argument("-q", "--quiet", action="store_true")
    q = _add(ss, "synthesize", "scribbles from full masks: medial-axis strokes per region", """
        rloss scribbles synthesize --masks data/SegmentationClass --images data/JPEGImages \\
            --out data/scribbles --fraction 0.03 --seed 0""", cmd_synthesize)
    q.add_argument("--masks", required=True, help="folder of full-mask PNGs")
    q.add_argument("--out", required=True)
    q.add_argument("--images", help="image folder, for the preview picture")
    q.add_argument("--fraction", type=FRACTION, default=0.03, help="share of pixels to label")
    q.add_argument("--thickness", type=POSITIVE_INT, default=3)
    q.add_argument("--strokes", type=POSITIVE_INT, default=3, help="strokes per region at most")
    q.add_argument("--min-area", type=COUNT, default=64, help="skip smaller regions")
    q.add_argument("--seed", type=COUNT, default=0)
    q.add_argument("-q", "--quiet", action="store_true")

    p = _add(sub, "lists", "train/val list files for ImageSegData", """
        rloss lists --data data/ --labels scribbles --val-labels SegmentationClass \\
            --val-fraction 0.2 --seed 0      # writes data/list/{train,val}.txt""", cmd_lists)
    p.add_argument("--data", required=True, help="folder with JPEGImages/ and label folders")
    p.add_argument("--labels", default="SegmentationClass", help="label folder for training")
    p.add_argument("--val-labels", help="label folder for validation (default: --labels)")
    p.add_argument("--val-fraction", type=HOLDOUT, default=0.2)
    p.add_argument("--seed", type=COUNT, default=0)
    p.add_argument("--ids", help="use only these ids (one per line)")
    p.add_argument("--out", help="folder for train.txt and val.txt (default DATA/list)")

    def experiment_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--net", choices=["small", "deeplab_largeFOV"], help="default small")
        p.add_argument("--fraction", type=FRACTION, help="scribbled share of pixels (0.03)")
        p.add_argument("--seed", type=COUNT, help="scribbles and splits (0)")
        p.add_argument("--max-side", type=POSITIVE_INT,
                       help="resize images to this longer side (128)")
        p.add_argument("--crop-size", type=POSITIVE_INT,
                       help="4k+1 pixels for small (default 97), 8k+1 for deeplab_largeFOV")
        p.add_argument("--test-crop-size", type=POSITIVE_INT,
                       help="at least the resized image size; 4k+1 or 8k+1 (default 161)")
        p.add_argument("--batch-size", type=POSITIVE_INT)
        p.add_argument("--iters1", type=POSITIVE_INT, help="phase 1 iterations")
        p.add_argument("--iters2", type=POSITIVE_INT, help="phase 2 iterations")
        p.add_argument("--base-lr", type=NON_NEGATIVE, help="phase 1 learning rate (Adam)")
        p.add_argument("--base-lr2", type=NON_NEGATIVE, help="phase 2 learning rate")
        p.add_argument("--regularizers", nargs="+", choices=["densecrf", "ncut", "size"],
                       help="phase-2 losses to compare (default densecrf)")
        p.add_argument("--grid", nargs="+", metavar="[REG:]W,...",
                       help="candidates tried on the tuning split: W,XY,RGB for DenseCRF, "
                       "ncut:W,XY,RGB, size:W (loss weight, σxy, σrgb)")

    p = _add(sub, "experiment", "pCE vs pCE + DenseCRF vs full masks on a VOC-layout folder", """
        rloss experiment --data ../shared/data/weizmann_horse --out horse_exp
        rloss experiment --data VOCdevkit/VOC2012 --out voc --regularizers densecrf ncut size""",
             cmd_experiment)
    p.add_argument("--data", required=True, help="folder with JPEGImages/ and SegmentationClass/")
    p.add_argument("--out", required=True)
    experiment_options(p)

    p = _add(sub, "demo", "the main job on synthetic scenes; writes OUT/report.md", """
        rloss demo --out demo_out        # what `make demo` runs""", cmd_demo)
    p.add_argument("--out", default="demo_out")
    p.add_argument("--images", type=POSITIVE_INT, default=80, help="synthetic scenes to make")
    experiment_options(p)

    p = _add(sub, "bench", "time the DenseCRF loss against the published algorithm and "
             "pydensecrf2, side by side (what `make bench` runs)", """
        rloss bench --out bench_out
        rloss bench --sizes 321 --classes 21 --batches 1 --threads 1 --reps 10""", cmd_bench)
    p.add_argument("--out", default="bench_out", help="folder for bench.md, .csv and .png")
    p.add_argument("--sizes", type=POSITIVE_INT, nargs="+", default=[321, 513], help="image sides")
    p.add_argument("--classes", type=POSITIVE_INT, nargs="+", default=[21, 2])
    p.add_argument("--batches", type=POSITIVE_INT, nargs="+", default=[1, 10])
    p.add_argument("--threads", type=POSITIVE_INT, nargs="+", default=[1, 2])
    p.add_argument("--reps", type=POSITIVE_INT, default=5,
                   help="timed runs per method (median); rounded up to whole cycles of the "
                        "ten photographs the rounds take in turn")
    p.add_argument("--min-seconds", type=SECONDS, default=2.0,
                   help="more runs, up to 10 x --reps, until a configuration has taken this "
                        "long: fast ones get steadier medians")

    p = _add(sub, "parse-log", "Caffe's training log (glog) to CSV and a plot", """
        caffe train --solver solver.prototxt 2> phase1.log
        rloss parse-log phase1.log phase2.log --out curves   # curves.csv, curves.png""",
             cmd_parse_log)
    p.add_argument("logs", nargs="+", help="one log per phase, in order")
    p.add_argument("--out", default="log", help="output path without suffix")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> None:
    a = parser().parse_args(argv)
    if not a.verbose:
        os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        a.func(a)
    except OSError as e:  # a missing input, an output path that is a file, ...
        _die(f"{e.strerror}: {e.filename}" if e.filename else str(e))


if __name__ == "__main__":
    main()
