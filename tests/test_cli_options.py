"""Every numeric option of `rloss` is checked when it is parsed: a bad value
ends the command with argparse's usage error (exit 2) naming the option,
before any work, where it used to die later in a traceback or go through."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import rloss_cli
from rloss import cli

PROTOTXT = ["prototxt", "--out", "x"]
SYNTH = ["scribbles", "synthesize", "--masks", "m", "--out", "s"]


@pytest.mark.parametrize("argv, option, expected", [
    (PROTOTXT + ["--crop-size", "-5"], "--crop-size", "a positive integer"),
    (PROTOTXT + ["--num-labels", "0"], "--num-labels", "2 to 255 classes"),
    (PROTOTXT + ["--num-labels", "256"], "--num-labels", "2 to 255 classes"),
    (PROTOTXT + ["--batch-size", "0"], "--batch-size", "a positive integer"),
    (PROTOTXT + ["--test-crop-size", "1.5"], "--test-crop-size", "a positive integer"),
    (PROTOTXT + ["--mean", "104", "117", "nan"], "--mean", "a finite number"),
    (PROTOTXT + ["--densecrf-weight", "-0.5"], "--densecrf-weight", "a positive number"),
    (PROTOTXT + ["--bi-rgb-std", "nan"], "--bi-rgb-std", "a positive number"),
    (PROTOTXT + ["--bi-xy-std", "inf"], "--bi-xy-std", "a positive number"),
    (PROTOTXT + ["--scale-factor", "0"], "--scale-factor", "a fraction in (0, 1]"),
    (PROTOTXT + ["--size-lower", "0.1", "1.2"], "--size-lower", "a fraction in [0, 1]"),
    (PROTOTXT + ["--base-lr", "nan"], "--base-lr", "a number, 0 or more"),
    (PROTOTXT + ["--base-lr2", "-1"], "--base-lr2", "a number, 0 or more"),
    (PROTOTXT + ["--max-iter", "0"], "--max-iter", "a positive integer"),
    (PROTOTXT + ["--stepsize", "-3"], "--stepsize", "a positive integer"),
    (PROTOTXT + ["--snapshot", "-1"], "--snapshot", "an integer, 0 or more"),
    (["train", "--exp", "e", "--max-iter2", "0"], "--max-iter2", "a positive integer"),
    (["eval", "--grid", "-1"], "--grid", "an integer, 0 or more"),
    (["visualize-gradient", "--image", "i", "--stride", "0"], "--stride", "a positive integer"),
    (["scribbles", "convert", "a.xml", "--out", "o", "--thickness", "0"], "--thickness",
     "a positive integer"),
    (SYNTH + ["--fraction", "nan"], "--fraction", "a fraction in (0, 1]"),
    (SYNTH + ["--thickness", "0"], "--thickness", "a positive integer"),
    (SYNTH + ["--strokes", "-1"], "--strokes", "a positive integer"),
    (SYNTH + ["--seed", "-1"], "--seed", "an integer, 0 or more"),
    (["lists", "--data", "d", "--val-fraction", "1"], "--val-fraction", "a fraction in [0, 1)"),
    (["experiment", "--data", "d", "--out", "o", "--iters1", "0"], "--iters1",
     "a positive integer"),
    (["demo", "--images", "0"], "--images", "a positive integer"),
    (["demo", "--max-side", "ten"], "--max-side", "a positive integer"),
])
def test_bad_numbers_are_refused_when_parsed(argv, option, expected, capsys):
    with pytest.raises(SystemExit) as e:
        cli.parser().parse_args(argv)
    assert e.value.code == 2
    value = argv[-1]
    err = capsys.readouterr().err
    assert f"argument {option}: expected {expected}" in err and f"got '{value}'" in err


def test_train_takes_resume_or_overwrite_not_both(capsys):
    # Resuming keeps the snapshots that --overwrite would delete.
    with pytest.raises(SystemExit) as e:
        cli.parser().parse_args(["train", "--exp", "e", "--resume", "--overwrite"])
    assert e.value.code == 2
    assert "argument --overwrite: not allowed with argument --resume" in capsys.readouterr().err


def test_good_numbers_pass_through():
    a = cli.parser().parse_args(PROTOTXT + [
        "--num-labels", "2", "--crop-size", "97", "--scale-factor", "1", "--base-lr2", "0",
        "--snapshot", "0", "--size-lower", "0", "--size-upper", "1", "--mean", "-1", "0", "1e3"])
    assert (a.num_labels, a.crop_size, a.scale_factor, a.base_lr2, a.snapshot) == \
        (2, 97, 1.0, 0.0, 0)
    assert a.size_lower == [0.0] and a.size_upper == [1.0] and a.mean == [-1.0, 0.0, 1000.0]
    b = cli.parser().parse_args(["bench", "--min-seconds", "0", "--classes", "21", "2"])
    assert b.min_seconds == 0.0 and b.classes == [21, 2]


def test_a_refused_option_exits_before_any_work(tmp_path):
    # Used to run to a ZeroDivisionError inside the synthesizer.
    r = rloss_cli("scribbles", "synthesize", "--masks", tmp_path, "--out", tmp_path / "s",
                  "--thickness", "0", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "argument --thickness: expected a positive integer, got '0'" in r.stderr
    assert not (tmp_path / "s").exists()


def test_grid_refuses_nan_and_inf(capsys):
    for entry in ("1,nan,2", "ncut:1,2,inf", "size:-1"):
        with pytest.raises(SystemExit) as e:
            cli._setup(cli.parser().parse_args(["demo", "--grid", entry]))
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert f"--grid entry '{entry}': give WEIGHT,SIGMA_XY,SIGMA_RGB" in err
        assert err.rstrip().endswith("all positive")


def test_missing_and_misplaced_files_are_usage_errors(tmp_path):
    """An OSError from any command is one line and exit 2, not a traceback."""
    (tmp_path / "a_file").write_text("")
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(masks / "m.png")
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ok.png")
    np.save(tmp_path / "objects.npy", np.array([{"K": 2}], dtype=object))
    (tmp_path / "text.npy").write_text("0.5 0.5")
    np.savez(tmp_path / "two.npz", a=np.full((2, 8, 8), 0.5), b=np.zeros(3))
    for argv, message in (
            (["visualize-gradient", "--image", tmp_path / "nope.jpg", "--prob",
              tmp_path / "p.npy"], f"No such file or directory: {tmp_path / 'nope.jpg'}"),
            (["visualize-gradient", "--image", tmp_path / "broken.png", "--prob",
              tmp_path / "p.npy"], "cannot identify image file"),
            (["scribbles", "synthesize", "--masks", masks, "--out", tmp_path / "a_file", "-q"],
             "File exists"),
            (["eval", "--exp", tmp_path / "none"], "is missing"),
            # --prob files numpy reads only with pickles, or not as one array.
            (["visualize-gradient", "--image", tmp_path / "ok.png", "--prob",
              tmp_path / "objects.npy"], "objects.npy is not a .npy file numpy can read"),
            (["visualize-gradient", "--image", tmp_path / "ok.png", "--prob",
              tmp_path / "text.npy"], "text.npy is not a .npy file numpy can read"),
            (["visualize-gradient", "--image", tmp_path / "ok.png", "--prob",
              tmp_path / "two.npz"], "two.npz holds no numeric array; save one K x H x W")):
        r = rloss_cli(*argv, check=False)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith("rloss: error: ") and message in r.stderr, r.stderr


def test_binary_and_malformed_inputs_are_named(tmp_path):
    """A binary file where text belongs (a caffemodel for a prototxt), or a
    prototxt or rloss.json that does not parse, ends in one line naming it;
    these were tracebacks or Python's own message without the file."""
    binary = tmp_path / "model.caffemodel"
    binary.write_bytes(bytes(range(256)) * 4)
    readme = tmp_path / "notes.prototxt"
    readme.write_text("# a net\nrloss: 1\n")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ok.png")
    xml = tmp_path / "a.xml"
    xml.write_text("<annotation><size><width>8</width><height>8</height></size></annotation>")
    exp = tmp_path / "exp"
    (exp / "config").mkdir(parents=True)
    meta = exp / "config" / "rloss.json"
    not_text = f"{binary} is not a text file (invalid start byte at byte 128)"
    for argv, json_text, message in (
            (["eval", "--net", binary, "--weights", binary, "--out", tmp_path / "e"], None,
             f"{binary} is not a text prototxt (a binary file, such as a caffemodel?)"),
            (["eval", "--net", readme, "--weights", binary, "--out", tmp_path / "e"], None,
             f"{readme}: not a valid Caffe net prototxt: 2:1 : Message type "
             '"caffe.NetParameter" has no field named "rloss".'),
            (["visualize-gradient", "--image", tmp_path / "ok.png", "--net", binary,
              "--weights", binary], None,
             f"{binary} is not a text prototxt (a binary file, such as a caffemodel?)"),
            # --classes is read before any model runs.
            (["eval", "--net", readme, "--weights", binary, "--classes", binary], None,
             not_text),
            (["lists", "--data", tmp_path, "--ids", binary], None, not_text),
            (["scribbles", "convert", xml, "--mapping", binary, "--out", tmp_path / "s"],
             None, not_text),
            (["eval", "--exp", exp], "{", f"{meta} is not JSON (Expecting property name "
             "enclosed in double quotes: line 2 column 1 (char 2)); `rloss prototxt --out "
             f"{exp}` writes it"),
            (["visualize-gradient", "--exp", exp, "--image", tmp_path / "ok.png"],
             '{"net": "small"}',
             f"{meta} lacks options, stride; `rloss prototxt --out {exp}` writes it")):
        if json_text is not None:
            meta.write_text(json_text + "\n")
        r = rloss_cli(*argv, check=False)
        assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == \
            f"rloss: error: {message}", r.stderr


def test_eval_refuses_two_models_of_one_name(tmp_path):
    # Two runs' train_iter_9000 both became "train_iter_9000": the second
    # model's confusion files and predictions overwrote the first's.
    for extra, name in ((["--weights", "a/train_iter_9.caffemodel", "b/train_iter_9.caffemodel"],
                         "train_iter_9"),
                        (["--weights", "a.caffemodel", "b.caffemodel", "--names", "x", "x"],
                         "x")):
        r = rloss_cli("eval", "--net", "test.prototxt", "--out", tmp_path / "eval", *extra,
                      check=False)
        assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
            f"rloss: error: two models are named '{name}'; their files in --out and their "
            "columns would be one model's. Give each its own --names")
    assert not (tmp_path / "eval").exists()


def test_prototxt_refuses_a_crop_the_net_cannot_take(tmp_path):
    # It only printed a note; the nets it wrote then made Caffe abort at setup.
    (tmp_path / "list").mkdir()
    for name in ("train.txt", "val.txt"):
        (tmp_path / "list" / name).write_text("")
    for option, size, message in (
            ("--crop-size", "320", "deeplab_largeFOV needs 8k+1 pixels (such as 313 or 321)"),
            ("--test-crop-size", "512", "deeplab_largeFOV needs 8k+1 pixels (such as 505 or 513)")):
        r = rloss_cli("prototxt", "--net", "deeplab_largeFOV", "--data-root", tmp_path,
                      "--out", tmp_path / "exp", option, size, check=False)
        assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
            f"rloss: error: {option} {size}: {message}; at other sizes its scores and labels "
            "differ in size and Caffe aborts")
        assert not (tmp_path / "exp").exists()
    rloss_cli("prototxt", "--net", "small", "--data-root", tmp_path, "--out", tmp_path / "exp",
              "--crop-size", "97", "--test-crop-size", "161")
    assert (tmp_path / "exp" / "config" / "train.prototxt").is_file()


def test_prototxt_refuses_size_bounds_the_layer_would_refuse(tmp_path):
    # SizeLoss checked them only when the train net was set up.
    (tmp_path / "list").mkdir()
    for name in ("train.txt", "val.txt"):
        (tmp_path / "list" / name).write_text("")
    base = ["prototxt", "--net", "small", "--data-root", tmp_path, "--out", tmp_path / "exp",
            "--crop-size", "97", "--test-crop-size", "161", "--num-labels", "3",
            "--regularizer", "size"]
    for extra, message in (
            (["--size-lower", "0.1", "0.2"], "--size-lower gives 2 values for 3 classes; give "
                                             "one (for every class) or 3"),
            (["--size-upper", "0.5", "0.5", "0.5", "0.5"], "--size-upper gives 4 values for 3 "
                                                           "classes; give one (for every class) "
                                                           "or 3"),
            (["--size-lower", "0.1", "0.6", "0.1", "--size-upper", "0.5"],
             "class 1: --size-lower 0.6 is above --size-upper 0.5")):
        r = rloss_cli(*base, *extra, check=False)
        assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
            f"rloss: error: {message}"), extra
        assert not (tmp_path / "exp").exists()
    rloss_cli(*base, "--size-lower", "0.1", "0.2", "0", "--size-upper", "0.9")
    assert "upper_bound: 0.9" in (tmp_path / "exp" / "config" /
                                  "trainwithdensecrfloss.prototxt").read_text()
