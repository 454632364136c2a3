"""`rloss bench`: its baseline (the published algorithm restated) gives the
layer's numbers, and a tiny run writes its table, CSV and plot."""
from __future__ import annotations

import csv
import re

import numpy as np
import pytest

from conftest import rloss_cli


@pytest.fixture(scope="module")
def native(caffe):
    from rloss import bench
    return bench.Native(bench.build_lib(bench.REPO / "build" / "bench"))


def test_published_restatement_matches_layer_and_pydensecrf(caffe, native):
    from rloss import bench
    from rloss.gradient import densecrf_layer

    rng = np.random.default_rng(3)
    image, _ = bench.photographs(41, 2)
    image[1, :, :5, :7] = 0  # outside the ROI for the layer, not for pydensecrf2
    prob = bench.smooth_softmax(rng, 2, 5, 41)
    loss_pub, grad_pub, times = native.published(image, prob)
    loss_lat, grad_lat, _, vertices = native.lattice(image, prob)
    assert times.min() > 0 and vertices.min() > 0
    per_image = [densecrf_layer(image[i], prob[i], bench.SIGMA_XY, bench.SIGMA_RGB)
                 for i in range(2)]
    loss_layer = np.mean([p[0] for p in per_image])
    grad_layer = np.stack([p[1] for p in per_image]) / 2  # batch of 2: 1/N
    assert loss_pub == pytest.approx(loss_layer, rel=1e-5)
    assert loss_lat == pytest.approx(loss_layer, rel=1e-5)
    np.testing.assert_allclose(grad_pub, grad_layer, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(grad_lat, grad_layer, rtol=1e-4, atol=1e-3)
    assert (grad_pub[1, :, :5, :7] == 0).all()
    # pydensecrf2 filters S (.) R but has no ROI of its own: its -2 W S is
    # the layer's inside the ROI only.
    # Its buffers are kept between calls: a call of another shape between two
    # of this one leaves them right.
    pydensecrf = bench.PyDenseCRF()
    first = pydensecrf(image, prob)[1].copy()
    small = bench.smooth_softmax(rng, 1, 3, 21)
    loss_small, grad_small = pydensecrf(image[:1, :, :21, :21].copy(), small)
    assert grad_small.shape == small.shape and loss_small < 0
    loss_py, grad_py = pydensecrf(image, prob)
    assert loss_py == pytest.approx(loss_layer, rel=1e-4)
    np.testing.assert_allclose(grad_py * bench.roi(image), grad_layer, rtol=1e-3, atol=1e-2)
    np.testing.assert_array_equal(grad_py, first)
    # Its two parts are timed per call, summed over the batch.
    start = bench.time.perf_counter()
    pydensecrf(image, prob)
    took = bench.time.perf_counter() - start
    assert pydensecrf.phases.min() > 0 and pydensecrf.phases.sum() <= took


def test_tiny_run_writes_report(caffe, tmp_path):
    from rloss import bench

    lines = bench.run(tmp_path, sizes=[33], classes=[3], batches=[1, 2], threads=[1, 2],
                      reps=2, log=lambda s: None)
    rows = list(csv.DictReader(open(tmp_path / "bench.csv")))
    methods = {(r["batch"], r["threads"], r["method"]) for r in rows}
    # pydensecrf2 is timed on one thread only; a two-thread row times the
    # layer and the published algorithm on one thread too, in its rounds.
    assert methods == ({(b, "1", m) for b in ("1", "2") for m in bench.METHODS} |
                       {(b, "2", m) for b in ("1", "2")
                        for m in ["layer", "lattice", "published",
                                  "layer_1thread", "published_1thread"]})
    # Rounds come in whole cycles of the ten photographs: one at a time, ten
    # rounds; two at a time, five.
    assert all(float(r["median_ms"]) > 0 for r in rows)
    assert {(r["batch"], r["reps"]) for r in rows} == {("1", "10"), ("2", "5")}
    assert (tmp_path / "bench.png").stat().st_size > 1000
    text = (tmp_path / "bench.md").read_text()
    assert "| 33² | 3 | 2 | 1 |" in text and "× bound" in text and "Memory" in text
    # The split of one image: ours, the published algorithm's, pydensecrf2's.
    split = text[text.index("× bound |"):].splitlines()[2]
    cells = [c.strip() for c in split.split("|")[1:-1]]
    assert cells[:2] == ["33²", "3"] and len(cells) == 12, cells
    assert all(float(v) > 0 for c in cells[-2:] for v in c.split(", ")), cells
    # The gain from a second thread: the medians of this run's CSV, divided
    # (to their rounding: the CSV keeps microseconds).
    median = {(r["batch"], r["method"]): float(r["median_ms"]) for r in rows
              if r["threads"] == "2"}
    for b in ("1", "2"):
        row = re.search(rf"^\| 33² \| 3 \| {b} \| 2 \| ([0-9.]+)× \| ([0-9.]+)× \|$", text,
                        re.M)
        assert row, text
        for m, shown in zip(("layer", "published"), row.groups()):
            assert float(shown) == pytest.approx(median[b, m + "_1thread"] / median[b, m],
                                                 abs=0.02)
    scale = next(line for line in text.splitlines() if line.startswith("scale_factor"))
    ms = [float(m) for m in re.findall(r"([0-9.]+) ms", scale)]
    assert len(ms) == 2 and min(ms) > 0, scale
    assert text.splitlines()[0] == lines[0]


def test_turns_use_every_photograph_equally_often():
    from rloss import bench

    assert [t.tolist() for t in bench.turns(10, 1)] == [[i] for i in range(10)]
    assert [t.tolist() for t in bench.turns(10, 10)] == [list(range(10))]
    four = [t.tolist() for t in bench.turns(10, 4)]
    assert four == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1], [2, 3, 4, 5], [6, 7, 8, 9]]
    assert [t.tolist() for t in bench.turns(10, 12)] == [list(range(10)) + [0, 1]] + \
        [[2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3], [4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5],
         [6, 7, 8, 9, 0, 1, 2, 3, 4, 5, 6, 7], [8, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]


def test_one_pixel_run_skips_the_scale_factor_line(caffe, tmp_path):
    # Half of one pixel is nothing: the layer would stop the run with a CHECK.
    from rloss import bench

    bench.run(tmp_path, sizes=[1], classes=[2], batches=[1], threads=[1], reps=1,
              log=lambda s: None, min_seconds=60)
    text = (tmp_path / "bench.md").read_text()
    assert "| 1² | 2 | 1 | 1 |" in text and "scale_factor" not in text
    # A round of one pixel takes far less than 60 s / 10: rounds stop at 10 x reps.
    rows = list(csv.DictReader(open(tmp_path / "bench.csv")))
    assert {r["reps"] for r in rows} == {"10"}
    assert "median of 1 run or more" in text


@pytest.mark.parametrize("bad, msg", [
    (["--sizes", "321", "0"], "--sizes: expected a positive integer, got '0'"),
    (["--threads", "-1"], "--threads: expected a positive integer"),
    (["--reps", "0"], "--reps: expected a positive integer"),
    (["--min-seconds", "-1"], "--min-seconds: expected a number of seconds, 0 or more"),
    (["--min-seconds", "nan"], "--min-seconds: expected a number of seconds, 0 or more")])
def test_bad_options_are_refused(bad, msg, tmp_path):
    r = rloss_cli("bench", "--out", tmp_path / "b", *bad, check=False)
    assert r.returncode == 2 and msg in r.stderr, r.stderr
    assert not (tmp_path / "b").exists()


def test_heap_bytes_follows_allocations():
    """The memory report's counter moves by what is allocated and freed,
    byte for byte up to malloc's bookkeeping."""
    from rloss import bench

    before = bench.heap_bytes()
    block = np.ones(32 << 20, np.uint8)
    grown = bench.heap_bytes() - before
    assert 32 << 20 <= grown < (32 << 20) + (1 << 20)
    del block
    assert bench.heap_bytes() - before < 1 << 20
