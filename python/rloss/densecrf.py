"""Numpy statements of the DenseCRF and Normalized Cut losses with an exact
dense Gaussian.

It is quadratic in the number of pixels, so it serves only as an oracle for
small images: the layer's lattice approximates this kernel (up to a gain of
about 0.4-0.7 and a few percent of shape error), which is why tests compare
against it with bounds rather than exactly.
"""
from __future__ import annotations

import numpy as np


def bilateral_features(image: np.ndarray, sigma_xy: float, sigma_rgb: float) -> np.ndarray:
    """(x/sigma_xy, y/sigma_xy, I_1/sigma_rgb, ...) per pixel of a C x H x W image,
    in the layer's order (x is the column): an (H*W) x (2+C) array."""
    c, h, w = image.shape
    yy, xx = np.mgrid[:h, :w]
    planes = [xx / sigma_xy, yy / sigma_xy] + [image[i] / sigma_rgb for i in range(c)]
    return np.stack([np.asarray(p, np.float64).ravel() for p in planes], axis=1)


def roi_from_image(image: np.ndarray) -> np.ndarray:
    """The layer's rule: a pixel is outside when every channel truncates to 0."""
    return (np.trunc(image) != 0).any(axis=0)


def gaussian_affinity(image: np.ndarray, sigma_xy: float, sigma_rgb: float) -> np.ndarray:
    """Dense W_ij = exp(-|f_i - f_j|^2 / 2), self term included."""
    f = bilateral_features(image, sigma_xy, sigma_rgb)
    sq = (f * f).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * f @ f.T, 0)
    return np.exp(-d2 / 2)


def densecrf_loss(image: np.ndarray, prob: np.ndarray, sigma_xy: float, sigma_rgb: float,
                  roi: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Loss -(1/N) sum_n sum_k (S R)^T W (S R) and its gradient -2 R W (S R) / N
    for images N x C x H x W and probabilities N x K x H x W."""
    n, k, h, w = prob.shape
    loss, grad = 0.0, np.zeros(prob.shape, np.float64)
    for i in range(n):
        r = roi_from_image(image[i]) if roi is None else roi[i].reshape(h, w) != 0
        x = (prob[i] * r).reshape(k, -1).astype(np.float64)
        wx = x @ gaussian_affinity(image[i], sigma_xy, sigma_rgb)  # W is symmetric
        loss -= float((x * wx).sum()) / n
        grad[i] = (-2 * wx * r.ravel() / n).reshape(k, h, w)
    return loss, grad


def normalized_cut_loss(image: np.ndarray, prob: np.ndarray, sigma_xy: float,
                        sigma_rgb: float) -> tuple[float, np.ndarray]:
    """(1/N) sum_n sum_k x'W(R - x) / (W R)'x with x = S R, and its gradient;
    W here is exactly symmetric, so dE/dx = -[2 W x / B - C d / B^2] per class."""
    n, k, h, w = prob.shape
    loss, grad = 0.0, np.zeros(prob.shape, np.float64)
    for i in range(n):
        r = roi_from_image(image[i]).ravel().astype(np.float64)
        wm = gaussian_affinity(image[i], sigma_xy, sigma_rgb)
        x = prob[i].reshape(k, -1).astype(np.float64) * r
        d = wm @ r
        wx = x @ wm
        b = x @ d
        c = (x * wx).sum(1)
        ok = b > 0
        loss += float(((b[ok] - c[ok]) / b[ok]).sum()) / n
        g = np.where(ok[:, None], -(2 * wx / b[:, None] - c[:, None] * d / b[:, None] ** 2), 0)
        grad[i] = (g * r / n).reshape(k, h, w)
    return loss, grad
