"""`rloss experiment` / `rloss demo` end to end on a handful of generated
scenes with a few iterations: the arms, the split, the table and the report."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rloss import data, synthetic


def test_experiment_end_to_end(caffe, tmp_path):
    from rloss import experiment
    src = tmp_path / "src"
    synthetic.make_dataset(src, 12, size=(40, 52), jitter=4, seed=2)
    for p in list((src / "JPEGImages").iterdir()):  # sidecars are not images
        p.with_suffix(".xml").write_text("<annotation/>")
    # A class that only a held-out image has still gets a score channel.
    held_out = data.split_ids(data.find_ids(src, "SegmentationClass"), 0.25, 0)[1][0]
    mask = data.load_label(src / "SegmentationClass" / f"{held_out}.png")
    mask[:6, :6] = 3
    data.save_label(src / "SegmentationClass" / f"{held_out}.png", mask)
    s = experiment.Setup(crop_size=33, test_crop_size=65, batch_size=2, iters1=6, iters2=4,
                         test_fraction=0.25, tune_fraction=0.25,
                         grid=((1e-6, 20, 15), (3e-6, 10, 10)), ncut_grid=((1, 20, 10),),
                         size_grid=(10,), regularizers=("densecrf", "ncut", "size"))
    out = tmp_path / "out dir"  # a space: the lists are relative to OUT/data
    res = experiment.run(src, out, s, log=lambda m: None)
    split = json.loads((out / "split.json").read_text())
    assert (len(split["train"]), len(split["tune"]), len(split["test"])) == (7, 2, 3)
    assert not set(split["test"]) & (set(split["train"]) | set(split["tune"]))
    assert held_out in split["test"] and res["classes"] == 4
    assert len(res["test"]["pce"]["iou"]) == 4
    assert 0.01 < split["labelled_fraction"] < 0.1
    # The training list of the scribble arms reads scribbles, the full arm masks.
    for name, labels in (("train_scribbles", "scribbles"), ("train_full", "SegmentationClass")):
        pairs = data.read_list(out / "lists" / f"{name}.txt")
        assert [b for _, b in pairs] == [f"{labels}/{i}.png" for i in split["train"]]
        assert all((out / "data" / a).is_file() for a, _ in pairs)
    assert set(res["tune"]) == {"pce", "densecrf_0", "densecrf_1", "ncut_0", "size_0"}
    # Size bounds come from the tuning masks and hold for each of them.
    c = res["candidates"]["size_0"]
    for i in split["tune"]:
        m = data.load_label(out / "data" / "SegmentationClass" / f"{i}.png")
        for k in range(3):
            assert c["size_lower"][k] <= np.mean(m == k) <= c["size_upper"][k]
    assert res["chosen"]["densecrf"] == max(("densecrf_0", "densecrf_1"),
                                            key=lambda n: res["tune"][n])
    t = res["test"]
    gap = t["full"]["miou"] - t["pce"]["miou"]
    if gap > 0:
        assert res["gap_closed"]["densecrf"] == pytest.approx(
            (t["densecrf"]["miou"] - t["pce"]["miou"]) / gap)
    # Each arm trained both phases with the same schedule; DenseCRF only phase 2.
    runs = out / "runs"
    for arm in ("pce", "full"):
        assert (runs / arm / "model" / "train_iter_6.caffemodel").is_file()
        assert (runs / arm / "model" / "trainwithdensecrfloss_iter_4.caffemodel").is_file()
    assert not list((runs / "densecrf_0" / "model").glob("train_iter_*"))
    # The test-set scores are recomputable from the saved weights.
    from rloss.evaluate import evaluate, predict
    sc, _ = evaluate(predict(runs / "pce" / "config" / "test.prototxt",
                             res["weights"]["densecrf"], out / "lists" / "test.txt",
                             progress=False))
    assert sc.miou == pytest.approx(t["densecrf"]["miou"])
    md = experiment.report(res, out, "t", "rloss experiment ...", n_images=2).read_text()
    assert f"| {100 * t['full']['miou']:.1f} |" in md and "figures/predictions.png" in md
    for reg in ("DenseCRF", "Normalized Cut", "size"):
        assert f"pCE + {reg} (scribbles;" in md
    for f in ("predictions.png", "loss_curves.png", "gradient.png"):
        assert (out / "figures" / f).stat().st_size > 10000


def test_experiment_cli_refuses_bad_input(tmp_path):
    from conftest import rloss_cli
    r = rloss_cli("experiment", "--data", tmp_path, "--out", tmp_path / "o", check=False)
    assert r.returncode == 2 and "needs JPEGImages/ and SegmentationClass/" in r.stderr
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "SegmentationClass").mkdir()
    for bad in ("1e-6,5", "ncut:1,2", "size:-1", "bogus:1,2,3"):
        r = rloss_cli("experiment", "--data", tmp_path, "--out", tmp_path / "o", "--grid", bad,
                      check=False)
        assert r.returncode == 2 and "WEIGHT,SIGMA_XY,SIGMA_RGB" in r.stderr, bad
    # A name the lists cannot hold is refused before any data is prepared.
    from PIL import Image
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "JPEGImages" / "a b.jpg")
    data.save_label(tmp_path / "SegmentationClass" / "a b.png", np.zeros((8, 8), np.uint8))
    r = rloss_cli("experiment", "--data", tmp_path, "--out", tmp_path / "o", check=False)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        "rloss: error: ImageSegData splits list lines at whitespace, so these names cannot be "
        "listed: 'JPEGImages/a b.jpg SegmentationClass/a b.png'; rename the files (or the label "
        "folder)")
    assert not (tmp_path / "o" / "data").exists()
    # So is a crop the net cannot take (Caffe aborted once the data was prepared).
    r = rloss_cli("experiment", "--data", tmp_path, "--out", tmp_path / "o",
                  "--test-crop-size", 160, check=False)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        "rloss: error: --test-crop-size 160: small needs 4k+1 pixels (such as 157 or 161); at "
        "other sizes its scores and labels differ in size and Caffe aborts")
    assert not (tmp_path / "o" / "data").exists()


def test_experiment_refuses_held_out_images_larger_than_the_test_crop(tmp_path):
    """The test net centre-crops a larger image, so the held-out scores would
    cover part of each image; refused once the data is sized, before training."""
    from conftest import rloss_cli
    synthetic.make_dataset(tmp_path / "src", 6, size=(60, 80), jitter=0, seed=1)
    r = rloss_cli("experiment", "--data", tmp_path / "src", "--out", tmp_path / "o",
                  "--max-side", 72, "--test-crop-size", 65, check=False)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and last.startswith("rloss: error: 1 image(s) in "), r.stderr
    assert last.endswith("/o/lists/tune.txt are larger than the test net's 65x65 input, such as "
                         "JPEGImages/scene0005.jpg (72x54): its data layer would score only "
                         "their centre; the list needs 72x65: raise --test-crop-size to 4k+1 at "
                         "or above that, or lower --max-side"), last
    assert (tmp_path / "o" / "lists" / "test.txt").is_file()
    assert not (tmp_path / "o" / "runs").exists()


def test_experiment_refuses_masks_of_one_class(tmp_path):
    """Binary masks saved as 0/255 read as background and void: one class,
    which trained a 1-class net and scored every arm 100 %."""
    from PIL import Image
    from conftest import rloss_cli
    src = tmp_path / "src"
    for i in range(4):
        mask = np.zeros((24, 32), np.uint8)
        mask[6:18, 8:24] = 255
        data.save_label(src / "SegmentationClass" / f"m{i}.png", mask)
        (src / "JPEGImages").mkdir(exist_ok=True)
        Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(src / "JPEGImages" / f"m{i}.jpg")
    r = rloss_cli("experiment", "--data", src, "--out", tmp_path / "o", check=False)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        f"rloss: error: the masks in {src / 'SegmentationClass'} hold class 0 alone (255 is "
        "void, never a class): there is nothing to segment. Masks saved as 0/255 need their "
        "foreground stored as 1")
    assert not (tmp_path / "o" / "runs").exists()


def test_demo_cli_is_deterministic(caffe, tmp_path):
    """`rloss demo` makes the same scenes every time (seed 0 unless told) and
    writes its report; tiny settings keep it fast."""
    from conftest import rloss_cli
    out = tmp_path / "demo"
    r = rloss_cli("demo", "--out", out, "--images", 8, "--iters1", 2, "--iters2", 2,
                  "--crop-size", 33, "--batch-size", 2, "--max-side", 64,
                  "--test-crop-size", 65)
    assert "closes" in r.stdout and (out / "report.md").is_file()
    ref = tmp_path / "ref"
    synthetic.make_dataset(ref, 8, seed=0)
    for i in range(8):
        name = f"scene{i:04d}"
        assert (out / "scenes" / "JPEGImages" / f"{name}.jpg").read_bytes() == \
            (ref / "JPEGImages" / f"{name}.jpg").read_bytes()
        np.testing.assert_array_equal(
            data.load_label(out / "scenes" / "SegmentationClass" / f"{name}.png"),
            data.load_label(ref / "SegmentationClass" / f"{name}.png"))
