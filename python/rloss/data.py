"""Images, label maps and the list files ImageSegData reads.

Label maps are 8-bit PNGs holding class indices (255 = unlabelled). They are
written as palette PNGs with PASCAL VOC's colours, as VOC's SegmentationClass
and the scribble release are, so they look right in an image viewer and read
back as indices (never as colours) in Caffe's ImageSegData and in PIL.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

IGNORE = 255
#: PASCAL VOC's mean, B G R: what the published nets subtract.
VOC_MEAN_BGR = (104.008, 116.669, 122.675)

#: PASCAL VOC's 21 classes, in label order (the names ScribbleSup's XML uses).
VOC_CLASSES = ("background", "plane", "bike", "bird", "boat", "bottle", "bus", "car", "cat",
               "chair", "cow", "table", "dog", "horse", "motorbike", "person", "plant",
               "sheep", "sofa", "train", "monitor")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm")


def voc_palette() -> np.ndarray:
    """VOC's colour map, 256 x 3 uint8: class c gets the bits of c spread over
    the high bits of R, G and B; 255 (unlabelled) is the off-white VOC uses."""
    pal = np.zeros((256, 3), np.uint8)
    for c in range(256):
        r = g = b = 0
        v = c
        for shift in range(7, -1, -1):
            r |= (v & 1) << shift
            g |= ((v >> 1) & 1) << shift
            b |= ((v >> 2) & 1) << shift
            v >>= 3
        pal[c] = (r, g, b)
    return pal


def colorize(label: np.ndarray) -> np.ndarray:
    """An H x W x 3 uint8 picture of a label map."""
    return voc_palette()[np.asarray(label, np.uint8)]


def save_label(path: Path, label: np.ndarray) -> None:
    """Write class indices as a palette PNG (lossless; indices stay indices)."""
    arr = np.asarray(label)
    if arr.ndim != 2:
        raise ValueError(f"a label map is 2-D; got shape {arr.shape} for {path}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError(f"label values must lie in 0..255 for {path}")
    img = Image.fromarray(arr.astype(np.uint8), mode="P")
    img.putpalette(voc_palette().ravel().tolist())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def load_label(path: Path) -> np.ndarray:
    """Class indices of a palette or grey PNG, as ImageSegData reads them."""
    img = Image.open(path)
    if img.mode not in ("P", "L"):
        raise ValueError(f"{path} is a {img.mode} image; a label map must be a palette "
                         "or 8-bit grey PNG of class indices")
    return np.array(img, dtype=np.uint8)


def load_image(path: Path) -> np.ndarray:
    """H x W x 3 uint8 RGB."""
    return np.array(Image.open(path).convert("RGB"))


@dataclass(frozen=True)
class Feed:
    """How an ImageSegData layer turns a photo into the data blob:
    (BGR or grey pixel - mean) * scale. A net's scores, and the image its
    DenseCRF loss filters, depend on all three, so tools that feed a net
    themselves take them from its data layer (``feed_of``)."""
    mean: Tuple[float, ...] = VOC_MEAN_BGR  # one value, or one per channel
    scale: float = 1.0
    color: bool = True

    def __post_init__(self) -> None:
        if len(self.mean) not in (1, 3 if self.color else 1):
            raise ValueError(f"mean {list(self.mean)} has {len(self.mean)} values; a "
                             f"{'colour' if self.color else 'grey'} net needs 1"
                             + (" or 3" if self.color else ""))

    def net_input(self, rgb: np.ndarray) -> np.ndarray:
        """C x H x W float32 for an H x W x 3 uint8 RGB photo."""
        if self.color:
            pix = rgb[..., ::-1].astype(np.float32)
        else:  # the weights OpenCV's grey conversion uses
            pix = np.asarray(Image.fromarray(rgb).convert("L"), np.float32)[..., None]
        x = (pix - np.asarray(self.mean, np.float32)) * np.float32(self.scale)
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def pixels(self, blob: np.ndarray) -> np.ndarray:
        """H x W x 3 uint8 RGB of a C x H x W data blob, for figures (grey
        repeated)."""
        pix = blob.transpose(1, 2, 0).astype(np.float64) / self.scale + np.asarray(self.mean)
        pix = np.clip(np.rint(pix), 0, 255).astype(np.uint8)
        return np.repeat(pix, 3, axis=2) if pix.shape[2] == 1 else pix[..., ::-1]


def feed_of(layer: Any) -> Feed:
    """The Feed of an ImageSegData LayerParameter."""
    t = layer.transform_param
    return Feed(tuple(t.mean_value) or (0.0,), t.scale, layer.image_data_param.is_color)


def crop_of(layer: Any) -> Tuple[int, int]:
    """(height, width) an ImageSegData LayerParameter pads and crops to; 0 for none."""
    t = layer.transform_param
    return t.crop_height or t.crop_size, t.crop_width or t.crop_size


def read_text(path: Path) -> str:
    """A text file the user named (a list, class names, a tag mapping), or a
    ValueError that names it where it is binary: Python's own error does not."""
    try:
        return Path(path).read_text()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not a text file ({e.reason} at byte {e.start})") from None


def read_list(path: Path) -> List[Tuple[str, str]]:
    """(image, label) pairs of an ImageSegData list file."""
    pairs = []
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise ValueError(f"{path}:{lineno}: expected 'image label', got {line!r}")
        pairs.append((parts[0], parts[1]))
    return pairs


def resolve(root: str, entry: str) -> Path:
    """A list entry joined to root_folder the way ImageSegData joins them: as
    given when the root is empty, otherwise with one slash between."""
    if not root:
        return Path(entry)
    return Path(root.rstrip("/") + "/" + entry.lstrip("/"))


def check_fits(list_path: Path, root: str, height: int, width: int, hint: str) -> None:
    """Refuse a list whose images exceed a test net's input of height x width.
    ImageSegData would centre-crop them and the scores would cover part of
    each image while reading as whole-image numbers."""
    over = []
    for entry, _ in read_list(list_path):
        try:
            with Image.open(resolve(root, entry)) as im:
                w, h = im.size
        except OSError:
            continue  # missing or unreadable: the data layer says which, by name
        if h > height or w > width:
            over.append((entry, w, h))
    if over:
        need_w = max(w for _, w, _ in over)
        need_h = max(h for _, _, h in over)
        raise ValueError(f"{len(over)} image(s) in {list_path} are larger than the test net's "
                         f"{width}x{height} input, such as {over[0][0]} ({over[0][1]}x"
                         f"{over[0][2]}): its data layer would score only their centre; the "
                         f"list needs {max(need_w, width)}x{max(need_h, height)}: {hint}")


def image_files(folder: Path) -> Dict[str, str]:
    """Image file names in ``folder`` (a data folder's JPEGImages/) by id
    (file stem)."""
    if not folder.is_dir():
        return {}
    found: Dict[str, List[str]] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            found.setdefault(p.stem, []).append(p.name)
    # Otherwise the listing order would pick which one trains.
    twice = [" and ".join(names) for names in found.values() if len(names) > 1]
    if twice:
        raise ValueError(f"{folder} has two images for one id: {_some(twice)}; "
                         "keep one of each")
    return {stem: names[0] for stem, names in found.items()}


def _some(names: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(repr(x) for x in names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def find_ids(data: Path, labels: str) -> List[str]:
    """Ids that have both an image in JPEGImages/ and a label in ``labels``/."""
    images = image_files(data / "JPEGImages")
    if not images:
        raise FileNotFoundError(f"no images in {data / 'JPEGImages'}")
    label_dir = data / labels
    if not label_dir.is_dir():
        raise FileNotFoundError(f"no label folder {label_dir}")
    have = {p.stem for p in label_dir.glob("*.png")}
    ids = sorted(set(images) & have)
    if not ids:
        raise FileNotFoundError(f"no image in {data / 'JPEGImages'} has a label in {label_dir}")
    return ids


def list_lines(data: Path, ids: Iterable[str], labels: str) -> List[str]:
    """List lines relative to ``data`` (ImageSegData's root_folder). Every
    id must have its image and its label there, and no whitespace in them:
    ImageSegData splits a line at whitespace."""
    images = image_files(data / "JPEGImages")
    ids = list(ids)
    no_image = [i for i in ids if i not in images]
    if no_image:
        raise FileNotFoundError(f"{len(no_image)} id(s) have no image in "
                                f"{data / 'JPEGImages'}: {_some(no_image)}")
    no_label = [i for i in ids if not (data / labels / f"{i}.png").is_file()]
    if no_label:
        raise FileNotFoundError(f"{len(no_label)} id(s) have no label PNG in "
                                f"{data / labels}: {_some(no_label)}")
    lines = [f"JPEGImages/{images[i]} {labels}/{i}.png" for i in ids]
    spaced = [line for line in lines if len(line.split()) != 2]
    if spaced:
        raise ValueError(f"ImageSegData splits list lines at whitespace, so these names cannot "
                         f"be listed: {_some(spaced)}; rename the files (or the label folder)")
    # Headers only: ImageSegData would stop on these once training had started.
    unread, unequal = [], []
    for i in ids:
        try:
            with Image.open(data / "JPEGImages" / images[i]) as im, \
                    Image.open(data / labels / f"{i}.png") as lab:
                if im.size != lab.size:
                    unequal.append(f"{i} ({im.size[0]}x{im.size[1]} image, "
                                   f"{lab.size[0]}x{lab.size[1]} label)")
        except OSError:
            unread.append(i)
    if unread:
        raise ValueError(f"{len(unread)} id(s) have an image or label PIL cannot read: "
                         f"{_some(unread)}")
    if unequal:
        raise ValueError(f"{len(unequal)} id(s) have a label of another size than the image: "
                         f"{_some(unequal)}; a label map must match its image pixel for pixel")
    return lines


def split_ids(ids: Sequence[str], val_fraction: float, seed: int) -> Tuple[List[str], List[str]]:
    """A seeded split; at least one id on each side when there are two or more."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val fraction is {val_fraction}; it must lie in [0, 1)")
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    n_val = int(round(len(order) * val_fraction))
    if val_fraction > 0 and len(order) >= 2:
        n_val = min(max(n_val, 1), len(order) - 1)
    return sorted(order[n_val:]), sorted(order[:n_val])


def write_lists(data: Path, out: Path, labels: str, val_fraction: float = 0.2,
                seed: int = 0, val_labels: Optional[str] = None,
                ids: Optional[Sequence[str]] = None) -> Tuple[Path, Path]:
    """train.txt / val.txt under ``out``. ``val_labels`` lets validation read
    full masks while training reads scribbles."""
    ids = list(ids) if ids is not None else find_ids(data, labels)
    twice = sorted(i for i, n in Counter(ids).items() if n > 1)
    if twice:  # a repeated id can land in both lists: a val image trained on
        raise ValueError(f"ids given more than once: {_some(twice)}; list each id once")
    train, val = split_ids(ids, val_fraction, seed)
    lines = list_lines(data, train, labels), list_lines(data, val, val_labels or labels)
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "train.txt", out / "val.txt"
    for path, part in zip(paths, lines):
        path.write_text("".join(f"{s}\n" for s in part))
    return paths
