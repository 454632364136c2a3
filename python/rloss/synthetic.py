"""A deterministic toy segmentation set: textured coloured shapes (ellipses,
rectangles, triangles) on textured backgrounds, in VOC's layout.

Classes are colours-with-texture, not shapes: class 1 is warm, class 2 is
cool, so a net must read colour to separate them, and the object boundaries
are the image edges a DenseCRF loss can snap to. Textures and lighting keep
colour alone from being a pixel-wise giveaway.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import numpy as np
from PIL import Image
from scipy import ndimage

from .data import save_label

#: (name, base RGB colours) per class; the background draws from its own set.
PALETTES = {
    0: [(110, 140, 90), (150, 130, 100), (95, 110, 135), (140, 140, 120)],
    1: [(205, 70, 45), (225, 150, 40), (190, 60, 110)],
    2: [(40, 90, 200), (45, 170, 180), (90, 60, 170)],
}


def _texture(rng: np.random.Generator, h: int, w: int, scale: float, amp: float) -> np.ndarray:
    """Smooth noise with unit-ish spread, times ``amp``."""
    noise = ndimage.gaussian_filter(rng.normal(size=(h, w)), scale)
    noise /= noise.std() + 1e-8
    return noise * amp


def _shape_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
    ry, rx = rng.uniform(0.12, 0.3) * h, rng.uniform(0.12, 0.3) * w
    kind = rng.integers(3)
    if kind == 0:  # rotated ellipse
        t = rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
        v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
        return (u / rx) ** 2 + (v / ry) ** 2 < 1
    if kind == 1:  # rectangle
        return (np.abs(yy - cy) < ry) & (np.abs(xx - cx) < rx)
    # triangle from three points around the centre
    ang = rng.uniform(0, 2 * np.pi) + np.array([0, 2.1, 4.2])
    px, py = cx + rx * 1.3 * np.cos(ang), cy + ry * 1.3 * np.sin(ang)
    inside = np.ones((h, w), bool)
    for i in range(3):
        j = (i + 1) % 3
        side = (px[j] - px[i]) * (yy - py[i]) - (py[j] - py[i]) * (xx - px[i])
        k = (i + 2) % 3
        ref = (px[j] - px[i]) * (py[k] - py[i]) - (py[j] - py[i]) * (px[k] - px[i])
        inside &= side * ref > 0
    return inside


def scene(rng: np.random.Generator, h: int, w: int,
          shapes: Tuple[int, int] = (1, 3)) -> Tuple[np.ndarray, np.ndarray]:
    """One RGB image (uint8) and its mask (0 background, 1 warm, 2 cool)."""
    bg = np.array(PALETTES[0][rng.integers(len(PALETTES[0]))], np.float64)
    img = bg + _texture(rng, h, w, rng.uniform(2, 6), 18)[..., None] \
        + _texture(rng, h, w, 1.0, 6)[..., None] * rng.uniform(0.5, 1.5, 3)
    mask = np.zeros((h, w), np.uint8)
    for _ in range(rng.integers(shapes[0], shapes[1] + 1)):
        cls = int(rng.integers(1, 3))
        m = _shape_mask(rng, h, w)
        col = np.array(PALETTES[cls][rng.integers(len(PALETTES[cls]))], np.float64)
        tex = col + _texture(rng, h, w, rng.uniform(1, 3), 14)[..., None] \
            + rng.normal(0, 5, (h, w, 3))
        img[m] = tex[m]
        mask[m] = cls
    # Soft lighting across the image and a slight blur at edges, like a photo.
    yy, xx = np.mgrid[:h, :w]
    light = 1 + 0.15 * np.sin(xx / w * rng.uniform(1, 3) + rng.uniform(0, 6)) \
        * np.cos(yy / h * rng.uniform(1, 3))
    img = ndimage.gaussian_filter(img * light[..., None], (0.6, 0.6, 0))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), mask


def make_dataset(out: Path, n: int, size: Tuple[int, int] = (96, 128), seed: int = 0,
                 jitter: int = 16) -> List[str]:
    """Write ``n`` scenes to out/JPEGImages (JPEG, quality 95) and
    out/SegmentationClass (palette PNG); image sizes vary by up to ``jitter``."""
    rng = np.random.default_rng(seed)
    (out / "JPEGImages").mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(n):
        h = size[0] + int(rng.integers(0, jitter + 1))
        w = size[1] + int(rng.integers(0, jitter + 1))
        img, mask = scene(rng, h, w)
        name = f"scene{i:04d}"
        Image.fromarray(img).save(out / "JPEGImages" / f"{name}.jpg", quality=95)
        save_label(out / "SegmentationClass" / f"{name}.png", mask)
        ids.append(name)
    return ids
