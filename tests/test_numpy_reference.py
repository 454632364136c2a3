"""rloss.densecrf (exact dense Gaussian) as an oracle for the layer."""
from __future__ import annotations

import numpy as np

from rloss.densecrf import densecrf_loss
from test_densecrf_pycaffe import crf_net, load_net


def test_numpy_reference_gradient_is_exact():
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 255, (1, 3, 5, 6))
    image[0, :, 0, :] = 0.4  # a padded row: outside the ROI
    prob = rng.dirichlet(np.ones(3), 30).T.reshape(1, 3, 5, 6)
    loss, grad = densecrf_loss(image, prob, 3, 30)
    assert np.all(grad[0, :, 0, :] == 0)
    h = 1e-6
    for idx in [(0, 0, 1, 2), (0, 2, 4, 5), (0, 1, 3, 0)]:
        p = prob.copy()
        p[idx] += h
        numeric = (densecrf_loss(image, p, 3, 30)[0] - loss) / h
        assert abs(numeric - grad[idx]) < 1e-4 * max(1, abs(grad[idx]))


def test_layer_tracks_the_exact_gaussian(caffe, tmp_path):
    """The lattice is a gain (0.35-0.75 seen) times the Gaussian, up to a few
    percent of shape error: the gradient points the same way."""
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:16, :18]
    image = np.stack([128 + 100 * np.sin(xx / 6 + c) * np.cos(yy / 4) for c in range(3)])[None]
    net = load_net(caffe, tmp_path, crf_net(caffe, image.shape, 4, 25, with_pce=False))
    net.blobs["data"].data[...] = image
    net.params["score"][0].data[...] = rng.normal(0, 0.02, net.params["score"][0].data.shape)
    loss = float(net.forward()["densecrf_loss"])
    net.backward()
    prob = net.blobs["prob"].data.astype(np.float64)
    exact_loss, exact_grad = densecrf_loss(image, prob, 4, 25)
    assert 0.3 < loss / exact_loss < 0.8
    g = net.blobs["prob"].diff.ravel()
    cosine = g @ exact_grad.ravel() / np.linalg.norm(g) / np.linalg.norm(exact_grad)
    assert cosine > 0.95
