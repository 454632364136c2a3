"""The data tools without Caffe: label PNGs, lists, ScribbleSup conversion,
synthetic scribbles, synthetic scenes and log parsing."""
from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import rloss_cli
from rloss import data, logs, scribbles, synthetic


def test_palette_and_label_roundtrip(tmp_path):
    pal = data.voc_palette()
    assert pal[0].tolist() == [0, 0, 0] and pal[1].tolist() == [128, 0, 0]
    assert pal[2].tolist() == [0, 128, 0] and pal[15].tolist() == [192, 128, 128]
    lab = np.array([[0, 1, 255], [20, 2, 0]], np.uint8)
    data.save_label(tmp_path / "l.png", lab)
    img = Image.open(tmp_path / "l.png")
    assert img.mode == "P"  # VOC-style palette PNG, indices preserved
    np.testing.assert_array_equal(data.load_label(tmp_path / "l.png"), lab)
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="palette or 8-bit grey"):
        data.load_label(tmp_path / "rgb.png")


def write_xml(path, body, w=40, h=30):
    path.write_text(f"<annotation><filename>x.jpg</filename><size><width>{w}</width>"
                    f"<height>{h}</height></size>{body}</annotation>")


def poly(tag, pts):
    return "<polygon><tag>{}</tag>{}</polygon>".format(
        tag, "".join(f"<point><X>{x}</X><Y>{y}</Y></point>" for x, y in pts))


def test_convert_draws_clipped_three_pixel_polylines(tmp_path):
    xml = tmp_path / "a.xml"
    write_xml(xml, poly("background", [(2, 5), (30, 5)]) + poly("horse", [(20, 15), (20, 40)])
              + poly("person", [(-10, 25), (5, 25)]))
    lab = scribbles.convert(xml)
    assert lab.shape == (30, 40)
    # Horizontal stroke at y=5, 3 px wide: rows 4..6, columns 1..31.
    assert (lab[4:7, 2:31] == 0).all() and (lab[3, 2:31] == 255).all()
    assert (lab[7, 2:31] == 255).all()
    # Vertical stroke clipped at the bottom edge, class horse = 13.
    assert (lab[15:30, 19:22] == 13).all() and lab[29, 20] == 13
    # A stroke starting outside the image is clipped to column 0; person = 15.
    assert (lab[24:27, 0:6] == 15).all()
    # Nothing else is labelled.
    assert (lab != 255).sum() == 3 * 31 + 3 * 16 + 3 * 7 - 0


def test_convert_unknown_tag_and_mapping(tmp_path):
    xml = tmp_path / "ctx.xml"
    write_xml(xml, poly("sky", [(1, 1), (10, 1)]) + poly("grass", [(1, 20), (10, 20)]))
    with pytest.raises(KeyError, match="unknown tag.*grass, sky.*--mapping"):
        scribbles.convert(xml)
    r = rloss_cli("scribbles", "convert", xml, "--out", tmp_path / "out", check=False)
    assert r.returncode == 2 and "unknown tag(s) grass, sky" in r.stderr
    (tmp_path / "map.txt").write_text("sky 30\ngrass 40\n")
    rloss_cli("scribbles", "convert", tmp_path, "--mapping", tmp_path / "map.txt",
              "--out", tmp_path / "out", "-q")
    lab = data.load_label(tmp_path / "out" / "ctx.png")
    assert lab[1, 5] == 30 and lab[20, 5] == 40


def test_mapping_files(tmp_path):
    f = tmp_path / "m.txt"
    # One tag per line counts tags, as a --classes file does: a header or a
    # blank line used to shift every class by one.
    f.write_text("# PASCAL-Context subset\n\nsky\n\ngrass\n")
    assert scribbles.read_mapping(f) == {"sky": 0, "grass": 1}
    f.write_text("potted plant 16\n# comment\nsky 30\n")
    assert scribbles.read_mapping(f) == {"potted plant": 16, "sky": 30}
    for text, message in (("sky\ngrass 4\n", "m.txt:2: the file mixes 'tag' and 'tag index'"),
                          ("sky 1\nsky 2\n", "m.txt:2: tag 'sky' is given twice"),
                          ("sky 255\n", "m.txt:1: class 255 of 'sky' is outside 0..254"),
                          ("sky one\n", "m.txt:1: expected 'tag index'"),
                          ("# nothing\n\n", "m.txt names no tags")):
        f.write_text(text)
        with pytest.raises(ValueError, match=message):
            scribbles.read_mapping(f)
    write_xml(tmp_path / "a.xml", poly("sky", [(1, 1), (10, 1)]))
    r = rloss_cli("scribbles", "convert", tmp_path, "--mapping", f, "--out", tmp_path / "o",
                  check=False)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        f"rloss: error: {f} names no tags")


@pytest.mark.parametrize("w, h, pts, message", [
    ("", 30, [(1, 1)], "positive integer <width> and <height>"),
    (0, 30, [(1, 1)], "positive integer <width> and <height>"),
    (40, -3, [(1, 1)], "positive integer <width> and <height>"),
    (40.5, 30, [(1, 1)], "positive integer <width> and <height>"),
    (40, 30, [(1, 1), ("nan", 2)], "'horse' lacks finite numeric <X>/<Y>"),
    (40, 30, [(1, "inf")], "'horse' lacks finite numeric <X>/<Y>"),
    (40, 30, [("left", 2)], "'horse' lacks finite numeric <X>/<Y>"),
    (40, 30, [(1, "")], "'horse' lacks finite numeric <X>/<Y>"),
])
def test_convert_refuses_bad_sizes_and_points(tmp_path, w, h, pts, message):
    # NaN once became INT_MIN in the drawing and a zero width an IndexError.
    xml = tmp_path / "bad.xml"
    write_xml(xml, poly("horse", pts), w=w, h=h)
    with pytest.raises(ValueError, match=f"bad.xml: .*{message}"):
        scribbles.convert(xml)
    r = rloss_cli("scribbles", "convert", xml, "--out", tmp_path / "out", check=False)
    assert r.returncode == 2 and message in r.stderr


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    ids = synthetic.make_dataset(root, 6, size=(60, 80), seed=3)
    return root, ids


def test_synthetic_scenes_are_deterministic(scenes, tmp_path):
    root, ids = scenes
    again = synthetic.make_dataset(tmp_path, 6, size=(60, 80), seed=3)
    assert ids == again
    for i in ids:
        np.testing.assert_array_equal(data.load_label(root / "SegmentationClass" / f"{i}.png"),
                                      data.load_label(tmp_path / "SegmentationClass" / f"{i}.png"))
    masks = [data.load_label(root / "SegmentationClass" / f"{i}.png") for i in ids]
    assert set(np.unique(np.concatenate([m.ravel() for m in masks]))) == {0, 1, 2}


def test_synthesized_scribbles(scenes):
    root, ids = scenes
    total = labelled = 0
    for i in ids:
        mask = data.load_label(root / "SegmentationClass" / f"{i}.png")
        mask[:3, :3] = 255  # a void corner (VOC's boundary label)
        s = scribbles.synthesize(mask, 0.03, rng=scribbles.seed_for(i, 0))
        on = s != 255
        assert (s[on] == mask[on]).all(), "a scribble crosses into another class"
        assert not on[:3, :3].any()
        # Strokes keep off region boundaries: no scribbled pixel touches another class.
        edge = np.zeros_like(on)
        edge[:-1] |= mask[:-1] != mask[1:]
        edge[1:] |= mask[:-1] != mask[1:]
        edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
        edge[:, 1:] |= mask[:, :-1] != mask[:, 1:]
        assert not (on & edge).any()
        # Every region of at least 64 px gets a scribble.
        from skimage.measure import label as cc
        for cls in (0, 1, 2):
            comps = cc(mask == cls, connectivity=1)
            for c in range(1, comps.max() + 1):
                if (comps == c).sum() >= 200:
                    assert (on & (comps == c)).any(), (i, cls, c)
        np.testing.assert_array_equal(s, scribbles.synthesize(mask, 0.03,
                                                              rng=scribbles.seed_for(i, 0)))
        total += int((mask != 255).sum())
        labelled += int(on.sum())
    assert 0.02 < labelled / total < 0.06
    # The fraction is configurable.
    big = sum(int((scribbles.synthesize(data.load_label(root / "SegmentationClass" / f"{i}.png"),
                                        0.10, rng=scribbles.seed_for(i, 0)) != 255).sum())
              for i in ids)
    assert big > 2 * labelled


def test_synthesize_and_lists_cli(scenes, tmp_path):
    root, ids = scenes
    r = rloss_cli("scribbles", "synthesize", "--masks", root / "SegmentationClass",
                  "--images", root / "JPEGImages", "--out", root / "scribbles", "-q")
    frac = float(r.stdout.split("wrote 6 scribble PNGs")[1].split(":")[1].split("%")[0])
    assert 2 < frac < 6
    assert (root / "scribbles_preview.png").stat().st_size > 10000
    # An image of another size than its mask is named before any scribble is
    # written (ImageSegData stopped on it at training); so is one past the preview's four.
    images = tmp_path / "images"
    images.mkdir()
    for i in ids:
        (images / f"{i}.jpg").symlink_to(root / "JPEGImages" / f"{i}.jpg")
    (images / f"{ids[-1]}.jpg").unlink()
    h, w = data.load_label(root / "SegmentationClass" / f"{ids[-1]}.png").shape
    Image.fromarray(np.zeros((h, w + 1, 3), np.uint8)).save(images / f"{ids[-1]}.jpg")
    (images / "notes.txt").write_text("not an image")
    r = rloss_cli("scribbles", "synthesize", "--masks", root / "SegmentationClass",
                  "--images", images, "--out", tmp_path / "s", "-q", check=False)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        f"rloss: error: {root / 'SegmentationClass' / ids[-1]}.png is {w}x{h} but its image "
        f"{images / ids[-1]}.jpg is {w + 1}x{h}; a mask and its image must be the same size")
    assert not (tmp_path / "s").exists()
    (images / f"{ids[0]}.png").symlink_to(root / "JPEGImages" / f"{ids[0]}.jpg")
    r = rloss_cli("scribbles", "synthesize", "--masks", root / "SegmentationClass",
                  "--images", images, "--out", tmp_path / "s", "-q", check=False)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        f"rloss: error: {images} has two images for one id: '{ids[0]}.jpg and {ids[0]}.png'; "
        "keep one of each")
    rloss_cli("lists", "--data", root, "--labels", "scribbles", "--val-labels",
              "SegmentationClass", "--val-fraction", "0.34", "--seed", "1", "--out", tmp_path)
    train = data.read_list(tmp_path / "train.txt")
    val = data.read_list(tmp_path / "val.txt")
    assert len(train) == 4 and len(val) == 2
    assert {a for a, _ in train}.isdisjoint({a for a, _ in val})
    assert all(b.startswith("scribbles/") for _, b in train)
    assert all(b.startswith("SegmentationClass/") for _, b in val)
    for a, b in train + val:
        assert (root / a).is_file() and (root / b).is_file()
    # Seeded: the same split again, another seed another split.
    assert data.split_ids(ids, 0.34, 1) == data.split_ids(ids, 0.34, 1)
    assert any(data.split_ids(ids, 0.34, s) != data.split_ids(ids, 0.34, 1) for s in range(2, 6))
    r = rloss_cli("lists", "--data", tmp_path, check=False)
    assert r.returncode == 2 and "no images in" in r.stderr
    # An id given twice could be split into both lists.
    (tmp_path / "ids.txt").write_text(f"{ids[0]}\n{ids[1]}\n{ids[0]}\n")
    r = rloss_cli("lists", "--data", root, "--labels", "scribbles", "--ids", tmp_path / "ids.txt",
                  "--out", tmp_path / "l2", check=False)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        f"rloss: error: ids given more than once: '{ids[0]}'; list each id once")
    assert not (tmp_path / "l2").exists()
    r = rloss_cli("lists", "--data", root, "--labels", "scribbles", "--ids", tmp_path / "no.txt",
                  check=False)
    assert r.returncode == 2 and "No such file" in r.stderr.strip().splitlines()[-1]
    # A label of another size than its image, or one that is not a picture,
    # is named here, not by ImageSegData once training runs.
    d = tmp_path / "d"
    (d / "lab").mkdir(parents=True)
    (d / "JPEGImages").symlink_to(root / "JPEGImages")
    for i in ids[1:]:
        (d / "lab" / f"{i}.png").symlink_to(root / "scribbles" / f"{i}.png")
    h, w = data.load_label(root / "scribbles" / f"{ids[0]}.png").shape
    data.save_label(d / "lab" / f"{ids[0]}.png", np.zeros((h + 2, w), np.uint8))
    r = rloss_cli("lists", "--data", d, "--labels", "lab", "--out", d / "list", check=False)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        f"rloss: error: 1 id(s) have a label of another size than the image: '{ids[0]} ({w}x{h} "
        f"image, {w}x{h + 2} label)'; a label map must match its image pixel for pixel")
    (d / "lab" / f"{ids[0]}.png").write_text("not a picture")
    r = rloss_cli("lists", "--data", d, "--labels", "lab", "--out", d / "list", check=False)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        f"rloss: error: 1 id(s) have an image or label PIL cannot read: '{ids[0]}'")
    assert not (d / "list").exists()


def test_lists_refuse_what_imagesegdata_cannot_read(tmp_path):
    for sub in ("JPEGImages", "lab"):
        (tmp_path / sub).mkdir()
    for name in ("a", "b c", "d"):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "JPEGImages" / f"{name}.jpg")
        data.save_label(tmp_path / "lab" / f"{name}.png", np.zeros((4, 4), np.uint8))
    out = tmp_path / "list"

    def refused(*args: str) -> str:
        r = rloss_cli("lists", "--data", tmp_path, "--labels", "lab", "--out", out, *args,
                      check=False)
        assert r.returncode == 2 and not out.exists(), r.stderr
        return r.stderr.strip()

    # A name with a space would split into two fields in ImageSegData.
    assert refused() == (
        "rloss: error: ImageSegData splits list lines at whitespace, so these names cannot be "
        "listed: 'JPEGImages/b c.jpg lab/b c.png'; rename the files (or the label folder)")
    (tmp_path / "ids.txt").write_text("a\nzzz\n")
    assert refused("--ids", str(tmp_path / "ids.txt")) == (
        f"rloss: error: 1 id(s) have no image in {tmp_path / 'JPEGImages'}: 'zzz'")
    (tmp_path / "ids.txt").write_text("a\nd\n")
    assert refused("--ids", str(tmp_path / "ids.txt"), "--val-labels", "masks",
                   "--val-fraction", "0.5") == (
        f"rloss: error: 1 id(s) have no label PNG in {tmp_path / 'masks'}: 'a'")
    rloss_cli("lists", "--data", tmp_path, "--labels", "lab", "--out", out,
              "--ids", tmp_path / "ids.txt", "--val-fraction", "0.5")
    assert sorted(data.read_list(out / "train.txt") + data.read_list(out / "val.txt")) == [
        ("JPEGImages/a.jpg", "lab/a.png"), ("JPEGImages/d.jpg", "lab/d.png")]
    # Two images for one id: which one trained would depend on the folder's order.
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "JPEGImages" / "d.png")
    shutil.rmtree(out)
    assert refused("--ids", str(tmp_path / "ids.txt")) == (
        f"rloss: error: {tmp_path / 'JPEGImages'} has two images for one id: "
        "'d.jpg and d.png'; keep one of each")


LOG = """\
I1121 10:00:00.1 1 solver.cpp:239] Iteration 0 (0 iter/s, 0.1s/10 iters), loss = 2.5
I1121 10:00:00.1 1 solver.cpp:258]     Train net output #0: accuracy = 0.5
I1121 10:00:00.1 1 solver.cpp:258]     Train net output #1: accuracy = 0.25
I1121 10:00:00.1 1 solver.cpp:258]     Train net output #2: accuracy = 0.125
I1121 10:00:00.1 1 solver.cpp:258]     Train net output #3: densecrf_loss = -1.5e+07 (* 1e-08 = -0.15 loss)
I1121 10:00:00.1 1 solver.cpp:258]     Train net output #4: softmax_loss = 2.65 (* 1 = 2.65 loss)
I1121 10:00:00.1 1 sgd_solver.cpp:112] Iteration 0, lr = 0.001
I1121 10:00:01.1 1 solver.cpp:239] Iteration 10 (10 iter/s, 1s/10 iters), loss = 1.5
I1121 10:00:01.1 1 solver.cpp:258]     Train net output #0: accuracy = 0.75
I1121 10:00:01.1 1 solver.cpp:258]     Train net output #1: accuracy = 0.5
I1121 10:00:01.1 1 solver.cpp:258]     Train net output #2: accuracy = 0.375
I1121 10:00:01.1 1 solver.cpp:258]     Train net output #3: densecrf_loss = -2e+07 (* 1e-08 = -0.2 loss)
I1121 10:00:01.1 1 solver.cpp:258]     Train net output #4: softmax_loss = 1.7 (* 1 = 1.7 loss)
I1121 10:00:01.1 1 sgd_solver.cpp:112] Iteration 10, lr = 0.0001
I1121 10:00:02.1 1 caffe.cpp:304] Batch 0, accuracy = 0.9
"""


def test_parse_log(tmp_path):
    rows = logs.parse(LOG, phase="2")
    train = [r for r in rows if r["phase"] == "2"]
    assert [r["iter"] for r in train] == [0, 10]
    assert train[0]["loss"] == 2.5 and train[1]["lr"] == 1e-4
    assert train[1]["densecrf_loss"] == -2e7 and train[0]["softmax_loss"] == 2.65
    assert (train[1]["accuracy_0"], train[1]["accuracy_1"], train[1]["accuracy_2"]) == \
        (0.75, 0.5, 0.375)
    batch = [r for r in rows if r["phase"] == "batch"]
    assert batch == [{"phase": "batch", "iter": 0, "accuracy": 0.9}]
    (tmp_path / "p.log").write_text(LOG)
    rloss_cli("parse-log", tmp_path / "p.log", "--out", tmp_path / "curves")
    text = (tmp_path / "curves.csv").read_text().splitlines()
    assert text[0].startswith("phase,iter,loss")
    assert len(text) == 4 and (tmp_path / "curves.png").stat().st_size > 5000
    # Resumed into the same log: iteration 0 logged again keeps its last values.
    earlier = "".join(line.replace("= 0.", "= 0.0").replace("2.5", "9.5") + "\n"
                      for line in LOG.splitlines()[:7])
    assert logs.parse(earlier + LOG, phase="2") == rows
    # Two `caffe test` runs appended to one log: the last run's batches.
    run = "I1121 10:00:03.1 1 caffe.cpp:281] Running for 1 iterations.\n"
    again = run + LOG.splitlines()[-1].replace("0.9", "0.7") + "\n"
    assert logs.parse(run + LOG + again, phase="2") == rows[:-1] + [
        {"phase": "batch", "iter": 0, "accuracy": 0.7}]
    (tmp_path / "empty.log").write_text("nothing here\n")
    r = rloss_cli("parse-log", tmp_path / "empty.log", "--out", tmp_path / "e", check=False)
    assert r.returncode == 2 and "no Caffe iteration" in r.stderr


@pytest.mark.parametrize("cmd", [["prototxt"], ["train"], ["eval"], ["visualize-gradient"],
                                 ["scribbles", "convert"], ["scribbles", "synthesize"],
                                 ["lists"], ["parse-log"]])
def test_every_subcommand_has_help_with_an_example(cmd):
    r = rloss_cli(*cmd, "--help")
    assert "example:" in r.stdout and "rloss " + cmd[0] in r.stdout.split("example:")[1]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_redraw_rarely_off_a_terminal(monkeypatch):
    import itertools
    import tqdm
    import tqdm.std
    from rloss import progress

    def redraws(make_bar, stream):
        clock = itertools.count(0.0, 1.0)  # every reading of the clock is a second later
        monkeypatch.setattr(tqdm.std, "time", lambda: next(clock))
        for _ in make_bar(range(300), file=stream, desc="x"):
            pass
        return stream.getvalue().count("\r")

    plain = redraws(tqdm.tqdm, io.StringIO())
    to_log = redraws(progress.bar, io.StringIO())
    to_terminal = redraws(progress.bar, _Terminal())
    assert plain > 200  # the control: unthrottled, nearly every step redraws
    assert to_terminal > 200
    assert 2 <= to_log <= 300 * 3 / progress.LOG_INTERVAL + 2
    with progress.bar(total=5, file=io.StringIO()) as b:
        assert b.mininterval == progress.LOG_INTERVAL
    with progress.bar(total=5, file=_Terminal()) as b, tqdm.tqdm(total=5, file=_Terminal()) as c:
        assert b.mininterval == c.mininterval


@pytest.mark.parametrize("kw, message", [
    (dict(thickness=0), "thickness 0, strokes 3, min_area 64: thickness and strokes must be"),
    (dict(strokes=0), "thickness 3, strokes 0, min_area 64: thickness and strokes must be"),
    (dict(min_area=-1), "min_area -1: .* min_area at least 0"),
    (dict(fraction=float("nan")), r"fraction is nan; it must lie in \(0, 1\]")])
def test_synthesize_refuses_bad_arguments(kw, message):
    # thickness 0 used to end in a ZeroDivisionError.
    with pytest.raises(ValueError, match=message):
        scribbles.synthesize(np.zeros((20, 20), np.uint8), **kw)


def test_rasterize_refuses_a_stroke_thinner_than_a_pixel():
    # It used to draw thickness 0 (or -2) as 1 px without a word.
    line = [scribbles.Scribble("dog", [(1, 1), (8, 8)])]
    assert (scribbles.rasterize(10, 10, line, {"dog": 12}, 1) == 12).sum() == 8
    with pytest.raises(ValueError, match="a.xml: thickness 0; a stroke must be at least 1 px"):
        scribbles.rasterize(10, 10, line, {"dog": 12}, 0, source="a.xml")
