"""The Caffe-facing subcommands on a tiny generated set: `rloss prototxt`,
`rloss train` (both phases, resume, Ctrl-C), `tools/train.sh`, `rloss eval`
and `rloss visualize-gradient`."""
from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Tuple

import numpy as np
import pytest
from google.protobuf import text_format

from conftest import CROP, REPO, TEST_CROP, child_env, make_exp, rloss_cli


def read_rows(exp: Path):
    with open(exp / "log" / "train.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_prototxt_defaults_are_published(caffe, dataset, tmp_path):
    from caffe.proto import caffe_pb2
    for net, sigmas in (("deeplab_largeFOV", (100, 15)), ("resnet-101", (80, 13))):
        out = tmp_path / net
        rloss_cli("prototxt", "--net", net, "--data-root", dataset, "--out", out)
        for name, lr in (("solver", 1e-3), ("solverwithdensecrfloss", 1e-4)):
            s = text_format.Parse((out / "config" / f"{name}.prototxt").read_text(),
                                  caffe_pb2.SolverParameter())
            assert s.base_lr == pytest.approx(lr) and s.lr_policy == "step"
            assert (s.stepsize, s.max_iter, s.snapshot) == (3000, 9000, 1000)
            assert s.gamma == pytest.approx(0.1) and s.momentum == pytest.approx(0.9)
            assert s.weight_decay == pytest.approx(5e-4)
            assert s.solver_mode == caffe_pb2.SolverParameter.CPU
            assert Path(s.train_net).is_file()
        n = text_format.Parse((out / "config" / "trainwithdensecrfloss.prototxt").read_text(),
                              caffe_pb2.NetParameter())
        crf = [x for x in n.layer if x.type == "DenseCRFLoss"][0]
        assert (crf.densecrf_loss_param.bi_xy_std, crf.densecrf_loss_param.bi_rgb_std) == sigmas
        assert crf.loss_weight[0] == pytest.approx(1e-8)
        assert list(crf.propagate_down) == [False, True]
        data = n.layer[0]
        assert data.transform_param.crop_size == 321
        assert data.image_data_param.source == str(dataset / "list" / "train.txt")
        assert [x for x in n.layer if x.name.startswith(("fc8", "fc1"))][0] \
            .convolution_param.num_output == 21
        # The published structure: the same layers as the shipped template.
        from rloss import nets
        shipped = nets.fill((REPO / "prototxt" / net / "trainwithdensecrfloss.prototxt")
                            .read_text(), dict(DATA_ROOT="/d/", EXP="pascal_scribble",
                                               TRAIN_SET="train", NUM_LABELS=21), net=net)
        ref = text_format.Parse(shipped, caffe_pb2.NetParameter())
        assert [(x.name, x.type, list(x.bottom), list(x.top)) for x in n.layer] == \
            [(x.name, x.type, list(x.bottom), list(x.top)) for x in ref.layer]


def test_prototxt_options_and_refusals(caffe, dataset, tmp_path):
    from caffe.proto import caffe_pb2
    exp = make_exp(dataset, tmp_path / "e", "--mean", 1, 2, 3, "--densecrf-weight", 2e-9,
                   "--bi-xy-std", 40, "--bi-rgb-std", 9, "--scale-factor", 0.5,
                   "--solver-mode", "GPU", "--max-iter", 77, "--base-lr2", 5e-5)
    n = text_format.Parse((exp / "config" / "trainwithdensecrfloss.prototxt").read_text(),
                          caffe_pb2.NetParameter())
    d = n.layer[0]
    assert list(d.transform_param.mean_value) == [1, 2, 3]
    assert (d.transform_param.crop_size, d.image_data_param.batch_size) == (CROP, 2)
    crf = [x for x in n.layer if x.type == "DenseCRFLoss"][0]
    p = crf.densecrf_loss_param
    assert (p.bi_xy_std, p.bi_rgb_std, p.scale_factor) == (40, 9, 0.5)
    assert crf.loss_weight[0] == pytest.approx(2e-9)
    s = text_format.Parse((exp / "config" / "solverwithdensecrfloss.prototxt").read_text(),
                          caffe_pb2.SolverParameter())
    assert (s.max_iter, s.solver_mode) == (77, caffe_pb2.SolverParameter.GPU)
    assert s.base_lr == pytest.approx(5e-5)
    # Every generated net builds in Caffe.
    for v in ("train", "trainwithdensecrfloss"):
        net = caffe.Net(str(exp / "config" / f"{v}.prototxt"), caffe.TRAIN)
        assert net.blobs["label_shrink"].data.shape == (2, 1, 11, 11)
    net = caffe.Net(str(exp / "config" / "test.prototxt"), caffe.TEST)
    assert net.blobs["fc8_interp"].data.shape == (1, 3, TEST_CROP, TEST_CROP)
    for bad, msg in ((["--bi-xy-std", "0"], "--bi-xy-std: expected a positive number"),
                     (["--scale-factor", "2"], r"\(0, 1\]"),
                     (["--train-list", "/nope.txt"], "does not exist")):
        r = rloss_cli("prototxt", "--net", "small", "--data-root", dataset, "--out",
                      tmp_path / "bad", *bad, check=False)
        assert r.returncode == 2 and __import__("re").search(msg, r.stderr), r.stderr


def test_train_checks_weights_before_building_the_net(caffe, dataset, tmp_path):
    # The list names no real image: building the net would abort in the data layer.
    lst = tmp_path / "gone.txt"
    lst.write_text("/gone/a.jpg /gone/a.png\n")
    exp = make_exp(dataset, tmp_path / "e", "--train-list", lst, "--test-list", lst)
    r = rloss_cli("train", "--exp", exp, "--weights", tmp_path / "nope.caffemodel", "-q",
                  check=False)
    assert r.returncode == 2 and f"no weights file {tmp_path / 'nope.caffemodel'}" in r.stderr
    assert not (exp / "log" / "train.csv").exists()


def test_train_both_phases(caffe, dataset, tmp_path):
    exp = make_exp(dataset, tmp_path / "e", "--max-iter", 6, "--snapshot", 4, "--base-lr2", 0)
    r = rloss_cli("train", "--exp", exp, "-q")
    assert "phase 2:" in r.stdout
    rows = read_rows(exp)
    assert [(int(r["phase"]), int(r["iter"])) for r in rows] == \
        [(1, i) for i in range(6)] + [(2, i) for i in range(6)]
    for r in rows:
        assert float(r["softmax_loss"]) > 0 and 0 <= float(r["accuracy_miou"]) <= 1
        # The total is the weighted sum of the terms.
        crf = float(r["densecrf_loss"]) if r["densecrf_loss"] else 0.0
        assert float(r["loss"]) == pytest.approx(float(r["softmax_loss"]) + 1e-8 * crf,
                                                 rel=1e-4)
        assert (r["densecrf_loss"] != "") == (r["phase"] == "2")
    assert all(float(r["densecrf_loss"]) < 0 for r in rows if r["phase"] == "2")
    assert float(rows[0]["lr"]) == pytest.approx(1e-3) and float(rows[-1]["lr"]) == 0
    models = exp / "model"
    for name in ("train_iter_4", "train_iter_6", "trainwithdensecrfloss_iter_6"):
        assert (models / f"{name}.caffemodel").is_file()
        assert (models / f"{name}.solverstate").is_file()
    assert (exp / "log" / "loss_curves.png").stat().st_size > 10000
    # Phase 2 starts from phase 1's final snapshot: with base_lr 0 it stays there.
    a = caffe.Net(str(exp / "config" / "test.prototxt"), str(models / "train_iter_6.caffemodel"),
                  caffe.TEST)
    b = caffe.Net(str(exp / "config" / "test.prototxt"),
                  str(models / "trainwithdensecrfloss_iter_6.caffemodel"), caffe.TEST)
    for name in a.params:
        np.testing.assert_array_equal(a.params[name][0].data, b.params[name][0].data)
    fresh = caffe.Net(str(exp / "config" / "train.prototxt"), caffe.TRAIN)
    assert not np.array_equal(fresh.params["conv1_1"][0].data, a.params["conv1_1"][0].data)

    # A fresh run over these snapshots is refused: a shorter one would leave
    # the old iteration-6 models as the "latest", for eval and phase 2.
    def names():
        return sorted(p.name for p in models.iterdir())
    before = names()
    r = rloss_cli("train", "--exp", exp, "--phase", "1", "--max-iter", 2, "-q", check=False)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        f"rloss: error: {models} holds snapshots of an earlier run (train_iter_4.caffemodel, "
        "train_iter_6.caffemodel, train_iter_4.solverstate, train_iter_6.solverstate, ...); "
        "continue it with --resume, or pass --overwrite to delete them and train afresh")
    assert names() == before
    # --overwrite reads --weights before deleting the file it names (base_lr2 is 0).
    rloss_cli("train", "--exp", exp, "--phase", "2", "--max-iter", 1, "--overwrite", "-q",
              "--weights", models / "trainwithdensecrfloss_iter_6.caffemodel")
    assert [n for n in names() if n.startswith("trainwith")] == [
        "trainwithdensecrfloss_iter_1.caffemodel", "trainwithdensecrfloss_iter_1.solverstate"]
    c = caffe.Net(str(exp / "config" / "test.prototxt"),
                  str(models / "trainwithdensecrfloss_iter_1.caffemodel"), caffe.TEST)
    for name in a.params:
        np.testing.assert_array_equal(a.params[name][0].data, c.params[name][0].data)
    # Retraining phase 1 deletes phase 2's models too: they came from the old phase 1.
    rloss_cli("train", "--exp", exp, "--phase", "1", "--max-iter", 2, "--overwrite", "-q")
    assert names() == ["train_iter_2.caffemodel", "train_iter_2.solverstate"]


def test_train_log_is_caffes_loss_with_iter_size(caffe, caffe_bin, dataset, tmp_path):
    """With iter_size 3 a step runs three forward passes; Caffe's loss is their
    mean, and the log used to hold the last pass's alone."""
    from google.protobuf import text_format
    from caffe.proto import caffe_pb2
    from rloss import logs
    exp = make_exp(dataset, tmp_path / "e", "--max-iter", 4)
    solver = exp / "config" / "solver.prototxt"
    solver.write_text(solver.read_text() + "iter_size: 3\n")
    rloss_cli("train", "--exp", exp, "--phase", "1", "-q")
    ours = {int(r["iter"]): r for r in read_rows(exp)}
    sp = text_format.Parse((exp / "log" / "solver_phase1.prototxt").read_text(),
                           caffe_pb2.SolverParameter())
    assert sp.iter_size == 3 and sp.max_iter == 4
    sp.display, sp.snapshot_prefix = 1, str(tmp_path / "tool")
    (tmp_path / "solver.prototxt").write_text(text_format.MessageToString(sp))
    r = subprocess.run([str(caffe_bin), "train", f"--solver={tmp_path / 'solver.prototxt'}"],
                       capture_output=True, text=True, env=child_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    caffes = {row["iter"]: row for row in logs.parse(r.stderr)}
    assert sorted(ours) == [0, 1, 2, 3] and set(ours) < set(caffes)  # Caffe adds a last forward
    for it in ours:
        assert float(ours[it]["loss"]) == pytest.approx(caffes[it]["loss"], rel=1e-4), it
    # A solver that does not parse is named, without a traceback.
    solver.write_text(solver.read_text() + "iter_size: 2\n")
    r = rloss_cli("train", "--exp", exp, "--phase", "1", "--overwrite", "-q", check=False)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(
        f"rloss: error: {solver}: "), r.stderr
    assert (exp / "model" / "train_iter_4.caffemodel").is_file()  # deleted only once it runs
    assert 'should not have multiple "iter_size" fields' in r.stderr
    # Caffe's per-output lines are the last pass's: the mean is not one of them.
    assert any(float(ours[it]["softmax_loss"]) != pytest.approx(caffes[it]["softmax_loss"],
                                                                rel=1e-4) for it in ours)


def test_interrupt_then_resume(caffe, dataset, tmp_path, monkeypatch):
    """Ctrl-C between iterations snapshots; --resume continues from there and
    the log has each iteration once."""
    from rloss import solve
    from rloss.config import Experiment
    exp = Experiment(make_exp(dataset, tmp_path / "e", "--max-iter", 8, "--snapshot", 100))
    real = caffe.get_solver

    class Interrupting:
        def __init__(self, s):
            self._s = s

        def step(self, n):
            if self._s.iter == 3:
                raise KeyboardInterrupt
            self._s.step(n)

        def __getattr__(self, name):
            return getattr(self._s, name)

    monkeypatch.setattr(caffe, "get_solver", lambda p: Interrupting(real(p)))
    with pytest.raises(KeyboardInterrupt):
        solve.train(exp, "1", progress=False)
    assert (exp.model / "train_iter_3.caffemodel").is_file()
    assert (exp.model / "train_iter_3.solverstate").is_file()
    assert [int(r["iter"]) for r in read_rows(exp.root)] == [0, 1, 2]
    monkeypatch.setattr(caffe, "get_solver", real)
    # Phase 2 does not start from the interrupted phase 1 without being told.
    with pytest.raises(ValueError, match=re.escape(
            "phase 1 stopped at iteration 3 of 8 (train_iter_3.caffemodel); finish it with "
            f"`rloss train --exp {exp.root} --phase 1 --resume`, or give --weights")):
        solve.train(exp, "2", progress=False)
    assert not list(exp.model.glob("trainwith*"))
    done = solve.train(exp, "1", resume=True, progress=False)
    assert done[1].name == "train_iter_8.caffemodel"
    assert [int(r["iter"]) for r in read_rows(exp.root)] == list(range(8))
    # A resume below the latest snapshot would run no step and name a model
    # that never gets written.
    with pytest.raises(ValueError, match="phase 1 has a snapshot at iteration 8, past its "
                       "max_iter 5; resume with --max-iter 8 or more"):
        solve.train(exp, "1", resume=True, max_iter=5, progress=False)
    assert [int(r["iter"]) for r in read_rows(exp.root)] == list(range(8))
    assert sorted(p.name for p in exp.model.glob("*.caffemodel")) == \
        ["train_iter_3.caffemodel", "train_iter_8.caffemodel"]


def test_sigint_leaves_a_snapshot(caffe, dataset, tmp_path):
    exp = make_exp(dataset, tmp_path / "e", "--max-iter", 100000, "--snapshot", 100000)
    err = tmp_path / "stderr.txt"
    with open(err, "w") as f:
        p = subprocess.Popen([sys.executable, "-m", "rloss", "train", "--exp", str(exp),
                              "--phase", "1"], env=child_env(), stdout=subprocess.PIPE,
                             stderr=f, text=True)
    # Interrupt once training runs: the bar shows at least 2 iterations done.
    deadline = time.time() + 120
    while time.time() < deadline and not re.search(r"\| +([2-9]|\d\d+)/100000",
                                                   err.read_text()):
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    try:
        out, _ = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail("no exit 120 s after SIGINT; stderr: " + err.read_text()[-2000:])
    assert p.returncode == 130, err.read_text()[-2000:]
    assert "continue with --resume" in out
    states = sorted(exp.glob("model/train_iter_*.solverstate"))
    assert len(states) == 1 and int(states[0].stem.split("_")[-1]) > 0


def test_train_sh(caffe, dataset, tmp_path):
    from rloss import data
    work = tmp_path / "work"
    exp = work / "my exp"  # spaces in EXP and in DATA_ROOT
    (exp / "list").mkdir(parents=True)
    for f in ("train.txt", "val.txt"):
        (exp / "list" / f).write_text((dataset / "list" / f).read_text())
    with open(exp / "list" / "val.txt", "a") as f:  # a line ImageSegData skips
        f.write("  \t\n")
    # sed's '&' and '#' in the data root are written as they are.
    root = tmp_path / "R&D #1"
    root.symlink_to(dataset)
    env = child_env()
    env.update(NET_ID="small", EXP="my exp", DATA_ROOT=f"{root}/", TRAIN_SET="train",
               TEST_SET="val", NUM_LABELS="3", CROP_SIZE=str(CROP),
               TEST_CROP_SIZE=str(TEST_CROP), BATCH_SIZE="2", MAX_ITER="10",
               PATH=f"{REPO / '.caffe' / 'build' / 'tools'}:{REPO / 'bin'}:{os.environ['PATH']}")
    r = subprocess.run(["bash", str(REPO / "tools" / "train.sh")], cwd=work, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    model = exp / "model" / "small"
    assert (model / "train_iter_10.caffemodel").is_file()
    assert (model / "trainwithdensecrfloss_iter_10.caffemodel").is_file()
    lines = [x for x in r.stdout.splitlines() if x.startswith("pixel accuracy")]
    assert len(lines) == 2
    n = len(data.read_list(dataset / "list" / "val.txt"))
    assert r.stdout.count(f" on val ({n} images)") == 2  # caffe test passes once over the list
    miou = float(lines[1].split("mIoU ")[1])
    assert 0 < miou <= 1
    # The shell path's mIoU is the one `rloss eval` computes for that model.
    out = tmp_path / "eval"
    rloss_cli("eval", "--net", exp / "config" / "small" / "test_val.prototxt",
              "--weights", model / "trainwithdensecrfloss_iter_10.caffemodel", "--names", "m",
              "--out", out, "-q", "--list", dataset / "list" / "val.txt",
              "--data-root", dataset)
    ours = float((out / "metrics.md").read_text().split("**mIoU** | **")[1].split("**")[0])
    assert ours == pytest.approx(100 * miou, abs=0.06)
    log = exp / "log" / "small"
    assert (log / "curves.png").is_file() and (log / "curves.csv").is_file()
    rows = list(csv.DictReader(open(log / "curves.csv")))
    assert {r["phase"] for r in rows} == {"1", "2"}
    # A missing list stops with a message, before Caffe runs.
    env["TEST_SET"] = "nope"
    r = subprocess.run(["bash", str(REPO / "tools" / "train.sh")], cwd=work, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 1 and "no list my exp/list/nope.txt" in r.stderr
    env["TEST_SET"] = "val"
    for var, value, message in (("CROP_SIZE", "-321", "give a positive integer"),
                                ("NUM_LABELS", "0", "give a positive integer"),
                                ("DENSECRF_LOSS_WEIGHT", "nan", "give a positive number"),
                                ("DENSECRF_LOSS_WEIGHT", "0e0", "give a positive number"),
                                ("TRAIN_SET", 'tr"ain', "it goes into prototxt strings"),
                                ("DATA_ROOT", f"{dataset}\\", "it goes into prototxt strings"),
                                ("EXP", "my\nexp", "it goes into prototxt strings")):
        r = subprocess.run(["bash", str(REPO / "tools" / "train.sh")], cwd=work,
                           env={**env, var: value}, capture_output=True, text=True)
        assert r.returncode == 1 and f"{var} is '{value}'; {message}" in r.stderr, r.stderr
    r = subprocess.run(["bash", str(REPO / "tools" / "train.sh")], cwd=work,
                       env={**env, "CROP_SIZE": "40"}, capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1] == (
        "train.sh: CROP_SIZE 40: small needs 4k+1 pixels (such as 37 or 41); at other sizes "
        "its scores and labels differ in size and Caffe aborts")
    # A test crop smaller than the test images: caffe test would score their centre.
    r = subprocess.run(["bash", str(REPO / "tools" / "train.sh")], cwd=work,
                       env={**env, "TEST_CROP_SIZE": "41"}, capture_output=True, text=True)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 1 and last.startswith("train.sh: 2 image(s) in my exp/list/val.txt are "
                                                 "larger than the test net's 41x41 input"), last
    assert last.endswith(": raise TEST_CROP_SIZE to 4k+1 at or above that"), last
    # BATCH_SIZE as given, else the release's for the net (small: 8).
    config = exp / "config" / "small" / "trainwithdensecrfloss_train.prototxt"
    assert "batch_size: 2\n" in config.read_text()
    del env["BATCH_SIZE"]
    r = subprocess.run(["bash", str(REPO / "tools" / "train.sh")], cwd=work,
                       env={**env, "RUN_TRAIN": "0", "RUN_TEST": "0", "MAX_ITER": "1"},
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "batch_size: 8\n" in config.read_text()
    # That 1-iteration phase 2 is this run's final model, though an earlier run
    # left trainwithdensecrfloss_iter_10; phase 1 has no iteration 1: its latest.
    r = subprocess.run(["bash", str(REPO / "tools" / "train.sh")], cwd=work,
                       env={**env, "RUN_TRAIN": "0", "RUN_TRAINWITHDENSECRFLOSS": "0",
                            "MAX_ITER": "1"}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    tested = re.findall(r"^== small test (\S+) on val", r.stdout, re.M)
    assert tested == ["train_iter_10.caffemodel", "trainwithdensecrfloss_iter_1.caffemodel"]


@pytest.fixture(scope="module")
def trained(caffe, dataset, tmp_path_factory) -> Path:
    exp = make_exp(dataset, tmp_path_factory.mktemp("t") / "e", "--max-iter", 20)
    rloss_cli("train", "--exp", exp, "-q")
    return exp


def test_eval_scores_match_seg_accuracy(caffe, dataset, trained, tmp_path):
    from rloss import data, evaluate
    out = tmp_path / "eval"
    rloss_cli("eval", "--exp", trained, "--out", out, "-q", "--save-predictions")
    text = (out / "metrics.md").read_text()
    assert "train_iter_20" in text and "trainwithdensecrfloss_iter_20" in text
    # Against Caffe's SegAccuracy, which accumulates over the pass (reset: false).
    net = caffe.Net(str(trained / "config" / "test.prototxt"),
                    str(trained / "model" / "train_iter_20.caffemodel"), caffe.TEST)
    val = data.read_list(dataset / "list" / "val.txt")
    for _ in val:
        acc = net.forward()["accuracy"].ravel()
    conf = np.loadtxt(out / "train_iter_20_confusion.csv", delimiter=",")
    s = evaluate.Scores(conf.astype(np.int64))
    assert s.pixel_accuracy == pytest.approx(acc[0], abs=1e-6)
    assert s.miou == pytest.approx(acc[2], abs=1e-6)
    # Every labelled pixel of the list is counted once.
    labelled = sum(int((data.load_label(dataset / b) != 255).sum()) for _, b in val)
    assert conf.sum() == labelled
    # Prediction PNGs: palette, the image's size, classes only.
    for a, b in val:
        pred = data.load_label(out / "train_iter_20" / f"{Path(a).stem}.png")
        assert pred.shape == data.load_label(dataset / b).shape
        assert set(np.unique(pred)) <= {0, 1, 2}
    for f in ("predictions.png", "train_iter_20_confusion.png"):
        assert (out / f).stat().st_size > 5000


def test_eval_refuses_images_larger_than_the_test_crop(caffe, dataset, trained, tmp_path):
    """A test crop smaller than an image made eval score its centre alone,
    as if it were the whole image."""
    from rloss import data
    small = make_exp(dataset, tmp_path / "e41", "--test-crop-size", 41)
    weights = trained / "model" / "train_iter_20.caffemodel"
    r = rloss_cli("eval", "--net", small / "config" / "test.prototxt", "--weights", weights,
                  "--out", tmp_path / "o", "-q", check=False)
    val = data.read_list(dataset / "list" / "val.txt")
    sizes = {a: data.load_label(dataset / b).shape for a, b in val}
    assert all(h > 41 or w > 41 for h, w in sizes.values())
    first = val[0][0]
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        f"rloss: error: {len(val)} image(s) in {dataset / 'list' / 'val.txt'} are larger than the "
        f"test net's 41x41 input, such as {first} ({sizes[first][1]}x{sizes[first][0]}): its "
        "data layer would score only their centre; the list needs "
        f"{max(w for _, w in sizes.values())}x{max(h for h, _ in sizes.values())}: generate the "
        "test net with a --test-crop-size at least that (`rloss prototxt`)")
    assert not (tmp_path / "o" / "metrics.md").exists()
    # The same list fits the experiment's own test net (crop 65).
    rloss_cli("eval", "--net", trained / "config" / "test.prototxt", "--weights", weights,
              "--out", tmp_path / "o", "-q")


def test_eval_reads_one_image_at_a_time_in_list_order(caffe, dataset, trained, tmp_path):
    """A test net with batch_size 2 used to be scored on the first image of
    each batch, under the next name in the list; shuffle mixed the names."""
    from google.protobuf import text_format
    from caffe.proto import caffe_pb2
    from rloss import data, evaluate
    test = trained / "config" / "test.prototxt"
    net = text_format.Parse(test.read_text(), caffe_pb2.NetParameter())
    for layer in net.layer:
        if layer.type == "ImageSegData":
            layer.image_data_param.batch_size = 2
            layer.image_data_param.shuffle = True
    (tmp_path / "test2.prototxt").write_text(text_format.MessageToString(net))
    weights = trained / "model" / "train_iter_20.caffemodel"
    lst = tmp_path / "three.txt"  # odd, so that a batch of two would wrap around
    lst.write_text("".join(f"{a} {b}\n" for a, b in data.read_list(dataset / "list" / "train.txt")[:3]))
    one, p1 = evaluate.evaluate(evaluate.predict(test, weights, lst, dataset, progress=False),
                                keep=True)
    two, p2 = evaluate.evaluate(evaluate.predict(tmp_path / "test2.prototxt", weights, lst,
                                                 dataset, progress=False), keep=True)
    assert [p.name for p in p2] == [p.name for p in p1] == [
        Path(a).stem for a, _ in data.read_list(lst)]
    assert len({p.label.shape for p in p1}) > 1  # three different images
    for a, b in zip(p1, p2):
        np.testing.assert_array_equal(a.label, b.label)
        np.testing.assert_allclose(a.prob, b.prob, atol=1e-6)
    assert two.confusion.tolist() == one.confusion.tolist()
    assert one.confusion.sum() == sum(int((p.label != 255).sum()) for p in p1)


def test_eval_images_are_the_pixels_whatever_the_nets_mean(caffe, dataset, trained, tmp_path):
    """The figures' images used to add VOC's mean back, whatever the net took off."""
    from google.protobuf import text_format
    from caffe.proto import caffe_pb2
    from rloss import data, evaluate
    net = text_format.Parse((trained / "config" / "test.prototxt").read_text(),
                            caffe_pb2.NetParameter())
    for layer in net.layer:
        if layer.type == "ImageSegData":
            del layer.transform_param.mean_value[:]
            layer.transform_param.mean_value.extend([10, 20, 30])
            layer.transform_param.scale = 0.5
    (tmp_path / "t.prototxt").write_text(text_format.MessageToString(net))
    preds = evaluate.predict(tmp_path / "t.prototxt", trained / "model" / "train_iter_20.caffemodel",
                             progress=False)
    val = data.read_list(dataset / "list" / "val.txt")
    for p, (a, _) in zip(preds, val):
        rgb = data.load_image(dataset / a)
        assert p.image.shape == rgb.shape
        assert np.abs(p.image.astype(int) - rgb).max() <= 4  # two JPEG decoders


def _other_feed(caffe, trained: Path, tmp_path: Path, grey: bool) -> Tuple[Path, Path]:
    """The trained test net with another mean and scale, or reading grey
    images (its first convolution summed over the colours), and its weights."""
    from caffe.proto import caffe_pb2
    net = text_format.Parse((trained / "config" / "test.prototxt").read_text(),
                            caffe_pb2.NetParameter())
    layer = [x for x in net.layer if x.type == "ImageSegData"][0]
    del layer.transform_param.mean_value[:]
    layer.transform_param.mean_value.extend([90] if grey else [10, 20, 30])
    layer.transform_param.scale = 0.5
    layer.image_data_param.is_color = not grey
    proto, weights = tmp_path / "other.prototxt", trained / "model" / "train_iter_20.caffemodel"
    proto.write_text(text_format.MessageToString(net))
    if grey:
        src = caffe.Net(str(trained / "config" / "test.prototxt"), str(weights), caffe.TEST)
        dst = caffe.Net(str(proto), caffe.TEST)
        for name, params in src.params.items():
            for a, b in zip(params, dst.params[name]):
                b.data[...] = a.data.sum(1, keepdims=True) if b.data.shape != a.data.shape \
                    else a.data
        weights = tmp_path / "grey.caffemodel"
        dst.save(str(weights))
    return proto, weights


@pytest.mark.parametrize("grey", [False, True])
def test_one_image_tools_feed_the_net_as_its_data_layer_does(caffe, dataset, trained,
                                                             tmp_path, grey):
    """visualize-gradient and the experiment's figures fed every net VOC's
    mean on three channels, unscaled: other nets got other scores, and the
    loss another image."""
    from rloss import data, evaluate, gradient
    proto, weights = _other_feed(caffe, trained, tmp_path, grey)
    first = next(evaluate.predict(proto, weights, progress=False))  # through ImageSegData
    name = data.read_list(dataset / "list" / "val.txt")[0][0]
    rgb = data.load_image(dataset / name)
    prob = gradient.predict_image(proto, weights, rgb, stride=4)
    np.testing.assert_allclose(prob, first.prob, atol=2e-3)  # two decoders' grey may differ by 1
    feed = gradient.feed_of_net(proto)
    assert feed == data.Feed((90.0,) if grey else (10.0, 20.0, 30.0), 0.5, not grey)
    image = feed.net_input(rgb)
    assert image.shape == (1 if grey else 3, *rgb.shape[:2])
    assert np.abs(feed.pixels(image).astype(int) - first.image).max() <= 1
    r = rloss_cli("visualize-gradient", "--image", dataset / name, "--net", proto,
                  "--weights", weights, "--stride", 4, "--out", tmp_path / "g.png")
    assert float(r.stdout.split()[1].rstrip(";")) == pytest.approx(
        gradient.densecrf_layer(image, prob, 100, 15)[0], rel=1e-4)
    r = rloss_cli("visualize-gradient", "--image", dataset / name, "--net", proto,
                  "--weights", weights, "--mean", 1, 2, "--out", tmp_path / "g.png", check=False)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        "rloss: error: --mean: mean [1.0, 2.0] has 2 values; a "
        + ("grey net needs 1" if grey else "colour net needs 1 or 3"))


def test_list_paths_join_as_imagesegdata_joins_them(tmp_path):
    from rloss.data import check_fits, resolve
    assert resolve("", "a/b.jpg") == Path("a/b.jpg")
    assert resolve("", "/abs/b.jpg") == Path("/abs/b.jpg")
    assert resolve("/r", "a.jpg") == resolve("/r/", "a.jpg") == resolve("/r/", "/a.jpg")
    assert resolve("/r", "a.jpg") == Path("/r/a.jpg")
    from PIL import Image
    Image.new("RGB", (30, 20)).save(tmp_path / "a.jpg")
    (tmp_path / "l.txt").write_text(f"{tmp_path}/a.jpg x.png\n")
    check_fits(tmp_path / "l.txt", "", 20, 30, "")
    with pytest.raises(ValueError, match="such as .*a.jpg \\(30x20\\).* needs 30x21: fix"):
        check_fits(tmp_path / "l.txt", "", 21, 29, "fix")


def test_scores_by_hand():
    from rloss.evaluate import Scores, confusion
    pred = np.array([0, 0, 1, 1, 2, 2, 0])
    lab = np.array([0, 1, 1, 1, 255, 2, 2])
    c = confusion(pred, lab, 3)
    assert c.tolist() == [[1, 0, 0], [1, 2, 0], [1, 0, 1]]
    s = Scores(c)
    np.testing.assert_allclose(s.iou, [1 / 3, 2 / 3, 1 / 2])
    assert s.pixel_accuracy == pytest.approx(4 / 6)
    assert s.mean_class_accuracy == pytest.approx((1 + 2 / 3 + 1 / 2) / 3)
    with pytest.raises(ValueError, match="outside 0..2"):
        confusion(pred, np.array([0, 1, 1, 1, 3, 2, 2]), 3)
    # A predicted class past num_classes used to be clipped into the last class.
    with pytest.raises(ValueError, match="predicted class 3 is outside 0..2; check --num-labels"):
        confusion(np.array([0, 0, 1, 1, 2, 2, 3]), lab, 3)
    assert confusion(np.array([0, 0, 1, 1, 7, 2, 0]), lab, 3).tolist() == c.tolist()  # ignored
    with pytest.raises(ValueError, match="the prediction is 2x3 but its label is 3x2"):
        confusion(np.zeros((2, 3)), np.zeros((3, 2)), 3)


def test_evaluate_refuses_fewer_classes_than_the_scores():
    from rloss.evaluate import Prediction, evaluate
    prob = np.zeros((4, 2, 2), np.float32)
    prob[3] = 1  # every pixel predicted as class 3
    p = Prediction("img1", np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.uint8), prob)
    assert evaluate(iter([p]))[0].confusion[0].tolist() == [0, 0, 0, 4]
    assert evaluate(iter([p]), 5)[0].confusion.shape == (5, 5)
    with pytest.raises(ValueError, match="img1: the scores have 4 classes but --num-labels is 3; "
                                         "give 4 or leave it out"):
        evaluate(iter([p]), 3)


def test_visualize_gradient(caffe, dataset, trained, tmp_path):
    from rloss import data, evaluate, gradient
    from rloss.visualize import softmax_backward
    name = data.read_list(dataset / "list" / "val.txt")[0][0]
    rgb = data.load_image(dataset / name)
    # The model path gives the test net's own probabilities.
    meta_mean = (104.008, 116.669, 122.675)
    prob = gradient.predict_image(trained / "config" / "test.prototxt",
                                  trained / "model" / "train_iter_20.caffemodel", rgb, stride=4)
    first = next(evaluate.predict(trained / "config" / "test.prototxt",
                                  trained / "model" / "train_iter_20.caffemodel", progress=False))
    np.testing.assert_allclose(prob, first.prob, atol=1e-5)
    # The layer's gradient: sum S * dL/dS = 2 L for L = -S'WS, and it is negative.
    img = data.Feed(meta_mean).net_input(rgb)
    loss, grad = gradient.densecrf_layer(img, prob, 30, 10)
    assert loss < 0 and (grad <= 0).all()
    assert float((prob * grad).sum()) == pytest.approx(2 * loss, rel=1e-4)
    # Through the softmax: against finite differences of the scores, taken in
    # float64 (in float32 the difference quotient cancels to ~1e-3).
    z = np.log(prob.astype(np.float64))
    g = np.random.default_rng(0).normal(size=prob.shape)
    ana = softmax_backward(prob, g)
    eps = 1e-4
    i = (1, 5, 7)
    zp = z.copy()
    zp[i] += eps
    sp = np.exp(zp) / np.exp(zp).sum(0)
    zm = z.copy()
    zm[i] -= eps
    sm = np.exp(zm) / np.exp(zm).sum(0)
    assert ana[i] == pytest.approx(((sp - sm) * g).sum() / (2 * eps), rel=1e-3)
    # The CLI, from a model and from given probabilities.
    r = rloss_cli("visualize-gradient", "--image", dataset / name, "--exp", trained,
                  "--out", tmp_path / "g.png")
    assert float(r.stdout.split()[1].rstrip(";")) == pytest.approx(
        gradient.densecrf_layer(img, prob, 100, 15)[0], rel=1e-5)
    assert (tmp_path / "g.png").stat().st_size > 20000
    # A deploy net, its image from an Input layer of the test crop's size, fed
    # VOC's mean: the same.
    from caffe.proto import caffe_pb2
    net = text_format.Parse((trained / "config" / "test.prototxt").read_text(),
                            caffe_pb2.NetParameter())
    deploy = caffe_pb2.NetParameter()
    deploy.layer.add(name="input", type="Input", top=["data"]).input_param.shape.add(
        dim=[1, 3, TEST_CROP, TEST_CROP])
    deploy.layer.extend(x for x in net.layer if x.type != "ImageSegData"
                        and not {"label", "data_dim"} & set(x.bottom))
    (tmp_path / "deploy.prototxt").write_text(text_format.MessageToString(deploy))
    r = rloss_cli("visualize-gradient", "--image", dataset / name, "--net",
                  tmp_path / "deploy.prototxt", "--weights",
                  trained / "model" / "train_iter_20.caffemodel", "--stride", 4,
                  "--out", tmp_path / "g.png")
    assert float(r.stdout.split()[1].rstrip(";")) == pytest.approx(
        gradient.densecrf_layer(img, prob, 100, 15)[0], rel=1e-5)
    # The experiment's kernel, scale_factor included, unless told otherwise.
    other = make_exp(dataset, tmp_path / "e", "--bi-xy-std", 30, "--bi-rgb-std", 10,
                     "--scale-factor", 0.5)
    weights = trained / "model" / "train_iter_20.caffemodel"
    for extra, sf in (((), 0.5), (("--scale-factor", 1), 1.0)):
        r = rloss_cli("visualize-gradient", "--image", dataset / name, "--exp", other,
                      "--weights", weights, "--out", tmp_path / "g.png", *extra)
        assert float(r.stdout.split()[1].rstrip(";")) == pytest.approx(
            gradient.densecrf_layer(img, prob, 30, 10, sf)[0], rel=1e-5), extra
    # Larger than the test crop, the image is padded to stride * k + 1: with a
    # wrong stride the scores came out on another grid and were cut to the image.
    from PIL import Image
    Image.fromarray(np.tile(rgb, (2, 2, 1))[:70, :90]).save(tmp_path / "big.png")
    test_net = trained / "config" / "test.prototxt"
    big = data.load_image(tmp_path / "big.png")
    assert gradient.predict_image(test_net, weights, big, stride=4).shape == (3, 70, 90)
    with pytest.raises(ValueError, match="gives 73x93 scores for a 71x91 input: 2 is not its "
                                         "output stride; give the right --stride"):
        gradient.predict_image(test_net, weights, big, stride=2)
    r = rloss_cli("visualize-gradient", "--image", tmp_path / "big.png", "--net", test_net,
                  "--weights", weights, "--stride", 2, "--out", tmp_path / "x.png", check=False)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(
        f"rloss: error: {test_net} gives 73x93 scores for a 71x91 input")
    np.save(tmp_path / "p.npy", prob)
    r = rloss_cli("visualize-gradient", "--image", dataset / name, "--prob", tmp_path / "p.npy",
                  "--bi-xy-std", 30, "--bi-rgb-std", 10, "--out", tmp_path / "h.png")
    assert float(r.stdout.split()[1].rstrip(";")) == pytest.approx(loss, rel=1e-5)
    np.save(tmp_path / "bad.npy", prob[:, :-1])
    r = rloss_cli("visualize-gradient", "--image", dataset / name, "--prob",
                  tmp_path / "bad.npy", "--out", tmp_path / "x.png", check=False)
    assert r.returncode == 2 and "expected K x" in r.stderr
    (tmp_path / "two.txt").write_text("background\nhorse\n")
    r = rloss_cli("visualize-gradient", "--image", dataset / name, "--prob", tmp_path / "p.npy",
                  "--classes", tmp_path / "two.txt", "--out", tmp_path / "x.png", check=False)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (  # glog above it
        f"rloss: error: {tmp_path / 'two.txt'} names 2 classes; the scores have {len(prob)}")
