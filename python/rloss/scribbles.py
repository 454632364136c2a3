"""Scribble labels: ScribbleSup's XML annotations to label PNGs, and synthetic
scribbles drawn from full masks for datasets that have only masks.

Either way the result is a label map with the class on scribbled pixels and
255 (unlabelled) elsewhere: what phase 1's partial cross-entropy reads.
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar

import numpy as np
from scipy import ndimage
from skimage.draw import line as draw_line
from skimage.measure import label as connected_components
from skimage.measure import regionprops
from skimage.morphology import skeletonize

from .data import IGNORE, VOC_CLASSES, read_text

T = TypeVar("T")


@dataclass
class Scribble:
    tag: str
    points: List[Tuple[float, float]]  # (x, y)


def _child_text(node: ET.Element, name: str) -> Optional[str]:
    for child in node:
        if child.tag.lower() == name.lower():
            return (child.text or "").strip()
    return None


def _child_number(node: ET.Element, name: str, kind: Callable[[str], T]) -> Optional[T]:
    """A child's text as ``kind``, or None where it is missing or malformed."""
    text = _child_text(node, name)
    try:
        return None if text is None else kind(text)
    except ValueError:
        return None


def parse_xml(path: Path) -> Tuple[int, int, List[Scribble]]:
    """(width, height, scribbles) of one ScribbleSup annotation file."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ValueError(f"{path}: not valid XML ({e})") from None
    size = next((n for n in root.iter() if n.tag.lower() == "size"), None)
    if size is None:
        raise ValueError(f"{path}: no <size> element; is this a ScribbleSup annotation?")
    width, height = _child_number(size, "width", int), _child_number(size, "height", int)
    if width is None or height is None or width < 1 or height < 1:
        raise ValueError(f"{path}: <size> needs positive integer <width> and <height>")
    scribbles = []
    for poly in (n for n in root.iter() if n.tag.lower() == "polygon"):
        tag = _child_text(poly, "tag")
        if tag is None:
            raise ValueError(f"{path}: a <polygon> has no <tag>")
        pts = []
        for pt in (n for n in poly if n.tag.lower() == "point"):
            x, y = _child_number(pt, "X", float), _child_number(pt, "Y", float)
            if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
                raise ValueError(f"{path}: a <point> of '{tag}' lacks finite numeric <X>/<Y>")
            pts.append((x, y))
        if pts:
            scribbles.append(Scribble(tag, pts))
    return width, height, scribbles


def read_mapping(path: Path) -> Dict[str, int]:
    """A tag -> class file for PASCAL-Context and other tag sets: lines
    ``tag index``, or one tag per line, numbered from 0 in order as a
    ``--classes`` file is (blank lines and ``#`` comments are not tags)."""
    mapping: Dict[str, int] = {}
    forms = set()
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) == 1:
            forms.add("tag")
            tag, idx = parts[0], len(mapping)
        else:
            forms.add("tag index")
            try:
                tag, idx = " ".join(parts[:-1]), int(parts[-1])
            except ValueError:
                raise ValueError(f"{path}:{lineno}: expected 'tag index', got {line!r}")
        if len(forms) > 1:
            # Which number a bare tag would get is a guess either way.
            raise ValueError(f"{path}:{lineno}: the file mixes 'tag' and 'tag index' lines; "
                             "use one form")
        if tag in mapping:
            raise ValueError(f"{path}:{lineno}: tag '{tag}' is given twice")
        if not 0 <= idx < IGNORE:
            raise ValueError(f"{path}:{lineno}: class {idx} of '{tag}' is outside 0..254")
        mapping[tag] = idx
    if not mapping:
        raise ValueError(f"{path} names no tags")
    return mapping


def rasterize(width: int, height: int, scribbles: Sequence[Scribble],
              classes: Mapping[str, int], thickness: int = 3,
              source: str = "annotation") -> np.ndarray:
    """Draw each scribble as a polyline ``thickness`` px wide (later ones on
    top), points clipped to the image."""
    if thickness < 1:
        raise ValueError(f"{source}: thickness {thickness}; a stroke must be at least 1 px wide")
    out = np.full((height, width), IGNORE, np.uint8)
    unknown = sorted({s.tag for s in scribbles if s.tag not in classes})
    if unknown:
        raise KeyError(f"{source}: unknown tag(s) {', '.join(unknown)}; known: "
                       f"{', '.join(classes)}. Pass --mapping FILE with 'tag index' lines")
    for s in scribbles:
        xy = np.rint(np.asarray(s.points, np.float64))
        xs = np.clip(xy[:, 0], 0, width - 1).astype(int)
        ys = np.clip(xy[:, 1], 0, height - 1).astype(int)
        stroke = np.zeros((height, width), bool)
        stroke[ys[0], xs[0]] = True
        for i in range(1, len(xs)):
            rr, cc = draw_line(ys[i - 1], xs[i - 1], ys[i], xs[i])
            stroke[rr, cc] = True
        if thickness > 1:
            stroke = ndimage.binary_dilation(stroke, np.ones((thickness, thickness), bool))
        out[stroke] = classes[s.tag]
    return out


def convert(xml_path: Path, mapping: Optional[Mapping[str, int]] = None,
            thickness: int = 3) -> np.ndarray:
    """One ScribbleSup XML file as a label map (VOC's tags unless ``mapping``)."""
    classes = dict(mapping) if mapping else {c: i for i, c in enumerate(VOC_CLASSES)}
    width, height, scribbles = parse_xml(xml_path)
    return rasterize(width, height, scribbles, classes, thickness, source=str(xml_path))


def _walk(skeleton: np.ndarray, start: Tuple[int, int], length: int,
          taken: np.ndarray) -> List[Tuple[int, int]]:
    """Up to ``length`` skeleton pixels reached from ``start`` along the
    skeleton, depth first so that the stroke follows one branch as far as it
    goes before turning back."""
    h, w = skeleton.shape
    path: List[Tuple[int, int]] = []
    stack, seen = [start], {start}
    while stack and len(path) < length:
        y, x = stack.pop()
        path.append((y, x))
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                q = (y + dy, x + dx)
                if (0 <= q[0] < h and 0 <= q[1] < w and q not in seen
                        and skeleton[q] and not taken[q]):
                    seen.add(q)
                    stack.append(q)
    return path


def _axis(inner: np.ndarray) -> np.ndarray:
    """The region's principal axis through its centroid, kept inside: a
    stroke for convex shapes, whose medial axis is a point or a short line."""
    props = regionprops(inner.astype(np.uint8))[0]
    cy, cx = props.centroid
    half = props.axis_major_length / 2
    t = props.orientation  # angle between the row axis and the major axis
    dy, dx = half * np.cos(t), half * np.sin(t)
    h, w = inner.shape
    ends = np.clip(np.rint([cy - dy, cx - dx, cy + dy, cx + dx]), 0, [h - 1, w - 1, h - 1, w - 1])
    rr, cc = draw_line(*(int(v) for v in ends))
    out = np.zeros_like(inner)
    out[rr, cc] = True
    return out & inner


def synthesize(mask: np.ndarray, fraction: float = 0.03, thickness: int = 3,
               strokes: int = 3, min_area: int = 64,
               rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Scribbles for a full mask: up to ``strokes`` strokes per connected
    region (background included) of at least ``min_area`` pixels, drawn
    ``thickness`` px wide along the region's medial axis and principal axis,
    kept off region boundaries. Each region gets about ``fraction`` of its
    area, but a stroke spans at least 40 % of its region's length, as a
    person's would; the excess comes off the largest region, so the image
    stays near ``fraction``. 255 in the mask (VOC's void) is never labelled."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction is {fraction}; it must lie in (0, 1]")
    if thickness < 1 or strokes < 1 or min_area < 0:
        raise ValueError(f"thickness {thickness}, strokes {strokes}, min_area {min_area}: "
                         "thickness and strokes must be at least 1, min_area at least 0")
    rng = rng or np.random.default_rng(0)
    out = np.full(mask.shape, IGNORE, np.uint8)
    brush = np.ones((thickness, thickness), bool)
    margin = thickness // 2 + 1
    regions = []  # (class, region, candidate stroke pixels, budget, floor)
    for cls in np.unique(mask):
        if cls == IGNORE:
            continue
        comps, n = connected_components(mask == cls, connectivity=1, return_num=True)
        for c in range(1, n + 1):
            region = comps == c
            area = int(region.sum())
            if area < min_area:
                continue
            # Stroke centres: more than `margin` px (chessboard) from another
            # region or the border, so a stroke never touches either.
            inner = ndimage.binary_erosion(region, np.ones((3, 3), bool), iterations=margin,
                                           border_value=0)
            if not inner.any():
                continue
            cand = skeletonize(inner) | _axis(inner)
            length = regionprops(region.astype(np.uint8))[0].axis_major_length
            floor = thickness * min(0.4 * length, int(cand.sum()))
            regions.append([cls, region, cand, max(fraction * area, floor), floor])
    if regions:
        excess = sum(r[3] for r in regions) - fraction * sum(int(r[1].sum()) for r in regions)
        largest = max(regions, key=lambda r: int(r[1].sum()))
        if excess > 0:
            largest[3] = max(largest[4], largest[3] - excess)
    for cls, region, cand, budget, _ in regions:
        taken = np.zeros_like(cand)
        drawn = np.zeros_like(region)
        per_stroke = max(int(np.ceil(budget / thickness / strokes)), 1)
        for _ in range(strokes):
            free = np.flatnonzero(cand & ~taken)
            if free.size == 0 or drawn.sum() >= budget:
                break
            start = np.unravel_index(free[rng.integers(free.size)], cand.shape)
            path = _walk(cand, (int(start[0]), int(start[1])), per_stroke, taken)
            for q in path:
                taken[q] = True
            piece = np.zeros_like(region)
            piece[tuple(np.array(path).T)] = True
            drawn |= ndimage.binary_dilation(piece, brush) & region
        out[drawn] = cls
    return out


def seed_for(name: str, seed: int) -> np.random.Generator:
    """A generator per image, so one image's scribbles do not depend on which
    other images are processed or in what order."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])
