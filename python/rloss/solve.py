"""The training driver: phase 1 (partial cross-entropy) then phase 2 (plus the
DenseCRF loss) with pycaffe solvers, one iteration at a time so that every
loss term and the accuracy are logged per iteration.

Snapshots are Caffe's own (``<prefix>_iter_N.caffemodel`` / ``.solverstate``)
so that `caffe train --snapshot` and `--weights` read them too. Ctrl-C
snapshots the current iteration before leaving, so ``--resume`` continues
from exactly there.
"""
from __future__ import annotations

import csv
import math
import re
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from .config import Experiment

#: Layer types whose top is a loss term worth its own column.
LOSS_TYPES = ("SoftmaxWithLoss", "DenseCRFLoss", "NormalizedCutLoss", "SizeLoss")
ACCURACY_NAMES = ("pixel", "class", "miou")


def snapshots(prefix: Path, suffix: str = ".solverstate") -> List[Tuple[int, Path]]:
    """(iteration, path) of Caffe's snapshots for a prefix, oldest first."""
    pat = re.compile(re.escape(prefix.name) + r"_iter_(\d+)" + re.escape(suffix) + "$")
    found = []
    if prefix.parent.is_dir():
        for p in prefix.parent.iterdir():
            m = pat.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
    return sorted(found)


def learning_rate(solver: Any, it: int) -> float:
    """The rate Caffe's SGD solvers use at iteration ``it``, for every
    lr_policy BVLC Caffe knows (the log's lr column; Caffe's own is only in
    its glog output)."""
    p = solver.lr_policy
    if p == "fixed":
        return solver.base_lr
    if p == "step":
        return solver.base_lr * solver.gamma ** (it // solver.stepsize)
    if p == "poly":
        return solver.base_lr * (1 - it / solver.max_iter) ** solver.power
    if p == "exp":
        return solver.base_lr * solver.gamma ** it
    if p == "inv":
        return solver.base_lr * (1 + solver.gamma * it) ** -solver.power
    if p == "sigmoid":
        return solver.base_lr / (1 + math.exp(-solver.gamma * (it - solver.stepsize)))
    if p == "multistep":
        return solver.base_lr * solver.gamma ** sum(it >= s for s in solver.stepvalue)
    return math.nan


def logged_tops(net_path: Path) -> Tuple[List[Tuple[str, float]], List[str]]:
    """([(loss top, loss weight)], [SegAccuracy tops]) of a TRAIN net."""
    from caffe.proto import caffe_pb2
    from .nets import parse

    net = parse(net_path, caffe_pb2.NetParameter())
    losses, accs = [], []
    for layer in net.layer:
        if any(r.HasField("phase") and r.phase == caffe_pb2.TEST for r in layer.include):
            continue
        if layer.type in LOSS_TYPES or layer.loss_weight:
            weight = layer.loss_weight[0] if layer.loss_weight else 1.0
            losses.append((layer.top[0], weight))
        elif layer.type == "SegAccuracy":
            accs.append(layer.top[0])
    return losses, accs


class PassMeans:
    """Each watched top's mean over the forward passes of one solver step.

    With iter_size > 1 a step runs several forward passes and the blobs keep
    only the last, while Caffe's loss is the mean over all of them; so the
    values are taken as each producing layer finishes its forward.
    """

    def __init__(self, net: Any, tops: List[str]):
        import weakref
        import numpy as np

        self.sums: Dict[str, Any] = {}
        self.passes: Dict[str, int] = {}
        self.watch: Dict[int, List[Tuple[str, Any]]] = {}
        found = set()
        for i, layer in enumerate(net._layer_names):
            for top in net.top_names[layer]:
                if top in tops and top not in found:  # its producer, not an in-place user
                    found.add(top)
                    self.watch.setdefault(i, []).append((top, net.blobs[top]))
        missing = set(tops) - found
        if missing:
            raise KeyError(f"the train net has no top {sorted(missing)[0]!r}")
        # The net keeps its callbacks for good: the hook holds this object
        # weakly, so that it and its blobs do not outlive the phase.
        ref = weakref.ref(self)

        def after_forward(layer: int) -> None:
            me = ref()
            if me is not None and layer in me.watch:
                for top, blob in me.watch[layer]:
                    v = np.array(blob.data, np.float64).ravel()
                    me.sums[top] = me.sums[top] + v if top in me.sums else v
                    me.passes[top] = me.passes.get(top, 0) + 1

        net.after_forward(after_forward)

    def take(self) -> Dict[str, Any]:
        """The means since the last take (float64 vectors), then start over."""
        out = {t: v / self.passes[t] for t, v in self.sums.items()}
        self.sums, self.passes = {}, {}
        return out


# A train.csv row: numbers as added, strings as read back.
Row = Dict[str, Union[str, float]]


class CsvLog:
    """The per-iteration log of both phases in one CSV, rewritten in full on
    each flush so that a column first seen in phase 2 gets its header."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: List[Row] = []
        if path.is_file():
            with open(path, newline="") as f:
                self.rows = list(csv.DictReader(f))

    def drop_after(self, phase: int, it: int) -> None:
        """Forget rows a resumed run will redo (and any later phase's)."""
        self.rows = [r for r in self.rows if int(r["phase"]) < phase
                     or (int(r["phase"]) == phase and int(r["iter"]) < it)]

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def flush(self) -> None:
        keys: List[str] = []
        for r in self.rows:
            keys.extend(k for k in r if k not in keys)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.rows)
        tmp.replace(self.path)


def _effective_solver(exp: Experiment, phase: int, max_iter: Optional[int],
                      snapshot: Optional[int]) -> Tuple[Path, Any]:
    """The phase's solver with command-line overrides, written to log/, and
    its caffe_pb2.SolverParameter (typed Any: protobuf classes are built at run time)."""
    from google.protobuf import text_format
    from caffe.proto import caffe_pb2
    from .nets import parse

    src = exp.solver(phase)
    if not src.is_file():
        raise FileNotFoundError(f"{src} is missing; run `rloss prototxt --out {exp.root}` first")
    s = parse(src, caffe_pb2.SolverParameter())
    if max_iter is not None:
        if max_iter <= 0:
            raise ValueError(f"--max-iter is {max_iter}; it must be positive")
        s.max_iter = max_iter
    if snapshot is not None:
        s.snapshot = snapshot
    exp.log.mkdir(parents=True, exist_ok=True)
    path = exp.log / f"solver_phase{phase}.prototxt"
    path.write_text(text_format.MessageToString(s))
    return path, s


def final_weights(exp: Experiment, phase: int) -> Path:
    """The latest caffemodel of a phase (its final one once it has finished)."""
    found = snapshots(exp.prefix(phase), ".caffemodel")
    if not found:
        raise FileNotFoundError(f"phase {phase} has no snapshot in {exp.model}; train it first "
                                f"(`rloss train --exp {exp.root} --phase {phase}`)")
    return found[-1][1]


def stale_snapshots(exp: Experiment, first_phase: int) -> List[Path]:
    """Snapshots of ``first_phase`` and later phases: what a fresh run of that
    phase replaces. Left in place they would outlive the run, and the
    latest-iteration rule (``final_weights``, ``--resume``) would pick an old
    run's model when the new one stops at a lower iteration."""
    return [p for phase in range(first_phase, 3) for suffix in (".caffemodel", ".solverstate")
            for _, p in snapshots(exp.prefix(phase), suffix)]


def finished_weights(exp: Experiment, phase: int) -> Path:
    """The final caffemodel of a phase that ran to its max_iter (that of its
    last run, which log/ records with the command line's overrides): a run
    stopped by Ctrl-C leaves a latest snapshot that is not a trained model."""
    from caffe.proto import caffe_pb2
    from .nets import parse

    latest = final_weights(exp, phase)
    it = snapshots(exp.prefix(phase), ".caffemodel")[-1][0]
    ran = exp.log / f"solver_phase{phase}.prototxt"
    max_iter = parse(ran if ran.is_file() else exp.solver(phase),
                     caffe_pb2.SolverParameter()).max_iter
    if it < max_iter:
        raise ValueError(f"phase {phase} stopped at iteration {it} of {max_iter} ({latest.name}); "
                         f"finish it with `rloss train --exp {exp.root} --phase {phase} --resume`, "
                         "or give --weights to start from another model")
    return latest


def train_phase(exp: Experiment, phase: int, weights: Optional[Path] = None,
                resume: bool = False, max_iter: Optional[int] = None,
                snapshot: Optional[int] = None, log: Optional[CsvLog] = None,
                progress: bool = True, flush_every: int = 20, overwrite: bool = False) -> Path:
    """Train one phase to its max_iter; returns its final caffemodel.

    A fresh run (not ``resume``) refuses to start over an earlier run's
    snapshots, which may be hours of training, unless ``overwrite`` lets it
    delete them once its solver holds its starting weights; retraining phase
    1 makes phase 2's stale too."""
    import caffe
    from .progress import bar as progress_bar

    stale = [] if resume else stale_snapshots(exp, phase)
    if stale and not overwrite:
        names = ", ".join(p.name for p in stale[:4]) + (", ..." if len(stale) > 4 else "")
        raise ValueError(f"{exp.model} holds snapshots of an earlier run ({names}); continue "
                         "it with --resume, or pass --overwrite to delete them and train afresh")
    solver_path, sp = _effective_solver(exp, phase, max_iter, snapshot)
    final = Path(f"{exp.prefix(phase)}_iter_{sp.max_iter}.caffemodel")
    states = snapshots(exp.prefix(phase))
    if resume and final.is_file() and any(i == sp.max_iter for i, _ in states):
        if progress:
            print(f"phase {phase}: already finished ({final.name})")
        return final
    restore = states[-1] if resume and states else None
    if restore is not None and restore[0] > sp.max_iter:
        # Caffe would run no step and the phase's final model would never exist.
        flag = "--max-iter2" if phase == 2 else "--max-iter"
        raise ValueError(f"phase {phase} has a snapshot at iteration {restore[0]}, past its "
                         f"max_iter {sp.max_iter}; resume with {flag} {restore[0]} or more, "
                         "or train afresh with --overwrite instead of --resume")
    # Checked before the solver is built: a bad list would abort that first.
    if restore is None and weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(f"no weights file {weights}")
    if sp.solver_mode == sp.GPU:
        caffe.set_mode_gpu()
    else:
        caffe.set_mode_cpu()
    solver = caffe.get_solver(str(solver_path))
    start = 0
    if restore is not None:
        start, state = restore
        solver.restore(str(state))
    elif weights is not None:
        solver.net.copy_from(str(weights))
    for p in stale:  # only now: --weights may name one of them
        p.unlink()
    losses, accs = logged_tops(exp.train_net(phase))
    means = PassMeans(solver.net, [t for t, _ in losses] + accs)
    log = log or CsvLog(exp.log / "train.csv")
    log.drop_after(phase, start)
    bar = progress_bar(total=sp.max_iter, initial=start, desc=f"phase {phase}", unit="it",
                       disable=not progress, dynamic_ncols=True)
    try:
        while solver.iter < sp.max_iter:
            it = solver.iter
            t0 = time.perf_counter()
            solver.step(1)
            row: Row = {"phase": phase, "iter": it, "lr": f"{learning_rate(sp, it):.6g}"}
            total = 0.0
            terms = {}
            seen = means.take()
            for top, w in losses:
                v = float(seen[top][0])
                terms[top] = v
                total += w * v
            row["loss"] = f"{total:.6g}"
            row.update({k: f"{v:.6g}" for k, v in terms.items()})
            for top in accs:
                for name, v in zip(ACCURACY_NAMES, seen[top]):
                    row[f"{top}_{name}"] = f"{float(v):.6g}"
            row["seconds"] = f"{time.perf_counter() - t0:.4f}"
            log.add(row)
            if not math.isfinite(total):
                solver.snapshot()
                log.flush()
                raise FloatingPointError(
                    f"phase {phase}, iteration {it}: the loss is {total} "
                    f"({', '.join(f'{k}={v:.4g}' for k, v in terms.items())}); lower the "
                    "learning rate or the regularizer's loss weight")
            bar.set_postfix({k: f"{v:.3g}" for k, v in terms.items()}, refresh=False)
            bar.update(1)
            if solver.iter % flush_every == 0:
                log.flush()
    except KeyboardInterrupt:
        bar.close()
        solver.snapshot()
        log.flush()
        print(f"\ninterrupted at iteration {solver.iter} of phase {phase}; snapshot written to "
              f"{exp.prefix(phase)}_iter_{solver.iter}.*; continue with --resume")
        raise
    bar.close()
    if not final.is_file():  # Caffe snapshots only on multiples of `snapshot`
        solver.snapshot()
    log.flush()
    return final


def train(exp: Experiment, phases: str = "both", weights: Optional[Path] = None,
          resume: bool = False, max_iter: Optional[int] = None,
          max_iter2: Optional[int] = None, snapshot: Optional[int] = None,
          progress: bool = True, overwrite: bool = False) -> Dict[int, Path]:
    """Phase 1 from ``weights`` (or from the net's fillers), phase 2 from phase
    1's final snapshot (or from ``weights`` when only phase 2 runs). Writes
    log/train.csv and log/loss_curves.png."""
    from .visualize import loss_curves

    todo = {"1": [1], "2": [2], "both": [1, 2]}[phases]
    log = CsvLog(exp.log / "train.csv")
    done: Dict[int, Path] = {}
    try:
        for phase in todo:
            init = weights
            if phase == 2 and 1 in done:
                init = done[1]
            elif phase == 2 and weights is None and not (resume and snapshots(exp.prefix(2))):
                init = finished_weights(exp, 1)
            done[phase] = train_phase(exp, phase, init, resume,
                                      max_iter2 if phase == 2 and max_iter2 else max_iter,
                                      snapshot, log, progress, overwrite=overwrite)
    finally:
        if log.rows:
            log.flush()
            loss_curves(log.path, exp.log / "loss_curves.png", title=exp.root.name)
    return done
