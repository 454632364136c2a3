"""Caffe's glog output (`caffe train`, `caffe test`) to rows of numbers.

Training lines give the iteration, the smoothed total loss, the learning
rate and every "Train net output" (unweighted: the value before Caffe's
"(* weight = ... loss)"); "Test net output" lines from a solver with a test
net and "Batch i, name = v" lines from `caffe test` are kept as well. A top
with several values (SegAccuracy's three) gets its values suffixed _0, _1, ...
An iteration logged twice (a run resumed into the same log) keeps its last
values; of several `caffe test` runs in one log, the last is kept.
"""
from __future__ import annotations

import csv
import re
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Sequence

_ITER = re.compile(r"Iteration (\d+)(?: \([^)]*\))?, loss = ([-+\d.eE]+|nan|inf)")
_LR = re.compile(r"Iteration (\d+), lr = ([-+\d.eE]+)")
_OUT = re.compile(r"(Train|Test) net output #(\d+): (\S+) = ([-+\w.]+)")
_TEST_AT = re.compile(r"Iteration (\d+), Testing net")
_BATCH = re.compile(r"Batch (\d+), (\S+) = ([-+\w.]+)")
_TEST_RUN = re.compile(r"Running for \d+ iterations")  # `caffe test` starting


def _name(outputs: List[tuple]) -> Dict[str, float]:
    """Output values keyed by top name, repeated names numbered."""
    counts: Dict[str, int] = {}
    for _, name, _ in outputs:
        counts[name] = counts.get(name, 0) + 1
    seen: Dict[str, int] = {}
    out: Dict[str, float] = OrderedDict()
    for _, name, value in sorted(outputs):
        if counts[name] > 1:
            i = seen.get(name, 0)
            seen[name] = i + 1
            out[f"{name}_{i}"] = value
        else:
            out[name] = value
    return out


def parse(text: str, phase: str = "1") -> List[Dict[str, object]]:
    """Rows: phase ("1", "2", ... for training, "test" for test-net passes,
    "batch" for `caffe test`), iter, then the values."""
    rows: List[Dict[str, object]] = []
    train: Dict[int, Dict[str, object]] = OrderedDict()
    pending: Dict[tuple, List[tuple]] = {}
    current, test_iter = None, None
    batches: Dict[int, List[tuple]] = OrderedDict()
    for line in text.splitlines():
        m = _ITER.search(line)
        if m:
            current = int(m.group(1))
            # Outputs of an earlier run at this iteration would be numbered as more values.
            pending.pop(("train", current), None)
            train.setdefault(current, {"phase": phase, "iter": current})["loss"] = \
                float(m.group(2))
            continue
        m = _LR.search(line)
        if m:
            train.setdefault(int(m.group(1)), {"phase": phase, "iter": int(m.group(1))})[
                "lr"] = float(m.group(2))
            continue
        m = _TEST_AT.search(line)
        if m:
            test_iter = int(m.group(1))
            pending.pop(("test", test_iter), None)
            continue
        m = _OUT.search(line)
        if m:
            kind, idx, name, value = m.group(1), int(m.group(2)), m.group(3), float(m.group(4))
            key = ("train", current) if kind == "Train" else ("test", test_iter)
            if key[1] is not None:
                pending.setdefault(key, []).append((idx, name, value))
            continue
        if _TEST_RUN.search(line):
            batches.clear()  # else an earlier run's outputs are numbered as more values
            continue
        m = _BATCH.search(line)
        if m:
            batches.setdefault(int(m.group(1)), []).append(
                (len(batches.get(int(m.group(1)), [])), m.group(2), float(m.group(3))))
    for (kind, it), outs in pending.items():
        if kind == "train":
            train.setdefault(it, {"phase": phase, "iter": it}).update(_name(outs))
    rows.extend(train.values())
    for (kind, it), outs in pending.items():
        if kind == "test":
            rows.append({"phase": "test", "iter": it, **_name(outs)})
    for b, outs in batches.items():
        rows.append({"phase": "batch", "iter": b, **_name(outs)})
    return rows


def write_csv(rows: Sequence[Dict[str, object]], path: Path) -> Path:
    keys: List[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return path
