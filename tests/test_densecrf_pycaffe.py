"""The DenseCRFLoss layer through pycaffe: NetSpec nets, the pydensecrf2 and
published-reference oracles, a solver, and bad input."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import child_env

K = 3


def crf_net(caffe, shape, sigma_xy, sigma_rgb, loss_weight=1.0, with_pce=True):
    """Input -> Convolution -> Softmax -> DenseCRFLoss (+ SoftmaxWithLoss on
    scribbles), as a phase-2 rloss net is wired."""
    L = caffe.layers
    n, c, h, w = shape
    ns = caffe.NetSpec()
    ns.data = L.Input(shape=dict(dim=[n, c, h, w]))
    ns.label = L.Input(shape=dict(dim=[n, 1, h, w]))
    # The CRF needs the raw intensities; the convolution trains better on [-0.5, 0.5].
    ns.scaled = L.Power(ns.data, scale=1 / 255.0, shift=-0.5)
    ns.score = L.Convolution(ns.scaled, num_output=K, kernel_size=3, pad=1,
                             weight_filler=dict(type="gaussian", std=0.01),
                             bias_filler=dict(type="constant", value=0))
    ns.prob = L.Softmax(ns.score)
    if with_pce:
        ns.pce_loss = L.SoftmaxWithLoss(ns.score, ns.label, loss_param=dict(ignore_label=255))
    ns.densecrf_loss = L.DenseCRFLoss(
        ns.data, ns.prob, propagate_down=[False, True], loss_weight=loss_weight,
        densecrf_loss_param=dict(bi_xy_std=sigma_xy, bi_rgb_std=sigma_rgb))
    return ns.to_proto()


def load_net(caffe, tmp_path, proto, name="net.prototxt"):
    path = tmp_path / name
    path.write_text(str(proto))
    return caffe.Net(str(path), caffe.TRAIN)


def pydensecrf_ws(image_hwc: np.ndarray, prob: np.ndarray, sigma_xy: float, sigma_rgb: float):
    """W S for all classes from pydensecrf2 (Krähenbühl's lattice): one
    inference step without unary leaves -W S in its second buffer."""
    import pydensecrf.densecrf as dcrf
    import pydensecrf.eigen as eigen
    h, w, _ = image_hwc.shape
    k = prob.shape[0]
    crf = dcrf.DenseCRF2D(w, h, k)
    crf.addPairwiseBilateral(sxy=sigma_xy, srgb=sigma_rgb, rgbim=np.ascontiguousarray(image_hwc),
                             compat=1, kernel=dcrf.DIAG_KERNEL,
                             normalization=dcrf.NO_NORMALIZATION)
    q = eigen.matrixXf(prob.reshape(k, -1).astype(np.float32))
    tmp1 = eigen.matrixXf(np.zeros((k, h * w), np.float32))
    tmp2 = eigen.matrixXf(np.zeros((k, h * w), np.float32))
    crf.stepInference(q, tmp1, tmp2)
    return -np.array(tmp2).reshape(prob.shape)


def test_netspec_net_matches_pydensecrf(caffe, tmp_path):
    rng = np.random.default_rng(0)
    h, w = 24, 30
    # uint8 photo-like image; no pixel is all zero, so the ROI is everything.
    image = np.clip(rng.normal(120, 40, (h, w, 3)), 1, 255).astype(np.uint8)
    net = load_net(caffe, tmp_path, crf_net(caffe, (1, 3, h, w), 7, 13, loss_weight=0.5))
    net.blobs["data"].data[...] = image.transpose(2, 0, 1)
    net.blobs["label"].data[...] = 255
    net.blobs["label"].data[0, 0, :2, :2] = 1
    net.params["score"][0].data[...] = rng.normal(0, 0.05, net.params["score"][0].data.shape)
    out = net.forward()
    net.backward()
    prob = net.blobs["prob"].data[0].copy()
    ws = pydensecrf_ws(image, prob, 7, 13)
    expected = -(prob.astype(np.float64) * ws).sum()
    # The top holds the unweighted loss; loss_weight scales the gradient.
    assert out["densecrf_loss"] == pytest.approx(expected, rel=1e-5)
    # prob feeds only the DenseCRF loss: its diff is loss_weight * -2 W S.
    np.testing.assert_allclose(net.blobs["prob"].diff[0], 0.5 * -2 * ws, rtol=1e-4, atol=1e-5)
    assert np.abs(net.blobs["score"].diff).sum() > 0


def resize_matrix(n_in: int, s: float) -> np.ndarray:
    """PyTorch's interpolate(scale_factor=s, mode="bilinear",
    align_corners=False) along one axis, as an out x in matrix."""
    n_out = int(np.floor(n_in * s))
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = max((i + 0.5) / s - 0.5, 0.0)
        lo = min(int(src), n_in - 1)
        hi = min(lo + 1, n_in - 1)
        m[i, lo] += 1 - (src - lo)
        m[i, hi] += src - lo
    return m


@pytest.mark.parametrize("s", [0.5, 0.6])
def test_scale_factor_is_resize_filter_and_adjoint(caffe, s):
    """scale_factor s: the loss of the resized problem (S resized bilinearly,
    the image sampled nearest, sigma_xy * s), pydensecrf2 on it as the oracle,
    and the gradient brought back by the resize's transpose. 0.5 takes the
    layer's vectorised path for halves, 0.6 the general one; odd sizes leave
    a last row and column that no tap reads."""
    from rloss.gradient import densecrf_layer

    rng = np.random.default_rng(3)
    h, w, sxy, srgb = 27, 33, 9, 13
    image = np.clip(rng.normal(120, 40, (h, w, 3)), 1, 255).astype(np.uint8)
    logits = rng.normal(0, 1, (K, h, w))
    prob = np.exp(logits) / np.exp(logits).sum(0)
    loss, diff = densecrf_layer(image.transpose(2, 0, 1).astype(np.float32), prob, sxy, srgb, s)

    s = float(np.float32(s))  # the layer's parameter is a float: 0.6 is 0.60000002
    ry, rx = resize_matrix(h, s), resize_matrix(w, s)
    small = np.einsum("yY,kYX,xX->kyx", ry, prob, rx)
    near_y = np.minimum(np.floor(np.arange(ry.shape[0]) / s).astype(int), h - 1)
    near_x = np.minimum(np.floor(np.arange(rx.shape[0]) / s).astype(int), w - 1)
    small_image = np.ascontiguousarray(image[near_y][:, near_x])
    ws = pydensecrf_ws(small_image, small.astype(np.float32), sxy * s, srgb)
    assert loss == pytest.approx(-(small * ws).sum(), rel=1e-4)
    grad = np.einsum("yY,kyx,xX->kYX", ry, -2 * ws, rx)
    np.testing.assert_allclose(diff, grad, rtol=1e-3, atol=1e-4)


def test_reference_values_through_a_text_prototxt(caffe, tmp_path, reference_dir):
    """The README's layer snippet, parsed from text, reproduces the published layer."""
    for case in sorted(reference_dir.glob("*.npz")):
        ref = np.load(case)
        n, c, h, w = ref["image"].shape
        k = ref["segmentation"].shape[1]
        (tmp_path / "ref.prototxt").write_text(textwrap.dedent(f"""
            force_backward: true
            layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: {n} dim: {c} dim: {h} dim: {w} }} }} }}
            layer {{ name: "prob" type: "Input" top: "fc8_interp_softmax" input_param {{ shape {{ dim: {n} dim: {k} dim: {h} dim: {w} }} }} }}
            layer {{ name: "densecrf_loss" type: "DenseCRFLoss" bottom: "data" bottom: "fc8_interp_softmax"
              propagate_down: false propagate_down: true top: "densecrf_loss" loss_weight: 1
              densecrf_loss_param {{ bi_xy_std: {float(ref['bi_xy_std'])} bi_rgb_std: {float(ref['bi_rgb_std'])} }} }}
            """))
        net = caffe.Net(str(tmp_path / "ref.prototxt"), caffe.TRAIN)
        net.blobs["data"].data[...] = ref["image"]
        net.blobs["fc8_interp_softmax"].data[...] = ref["segmentation"]
        loss = float(net.forward()["densecrf_loss"])
        net.backward()
        grad = net.blobs["fc8_interp_softmax"].diff
        assert loss == pytest.approx(float(ref["loss"]), rel=1e-3), case.name
        err = np.linalg.norm(grad - ref["grad"]) / np.linalg.norm(ref["grad"])
        assert err < 1e-3, case.name


def toy_scene(h=32, w=40, seed=0):
    """A bright disc on a dark background with noise, and a few scribbles."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    mask = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (h / 3) ** 2
    image = np.where(mask, 190.0, 60.0)[None].repeat(3, 0) + rng.normal(0, 8, (3, h, w))
    label = np.full((h, w), 255.0)
    label[h // 2, w // 2 - 3:w // 2 + 3] = 1
    label[2, 2:w - 2] = 0
    return np.clip(image, 1, 255), label


def test_solver_steps_lower_the_densecrf_term(caffe, tmp_path):
    image, label = toy_scene()
    net_path = tmp_path / "train.prototxt"
    net_path.write_text(str(crf_net(caffe, (1, 3) + image.shape[1:], 5, 20, loss_weight=2e-4)))
    solver_path = tmp_path / "solver.prototxt"
    solver_path.write_text(f'train_net: "{net_path}"\nbase_lr: 0.1\nmomentum: 0.9\n'
                           'lr_policy: "fixed"\nmax_iter: 1000\nsolver_mode: CPU\n'
                           f'snapshot_prefix: "{tmp_path}/snap"\nrandom_seed: 1\n')
    solver = caffe.SGDSolver(str(solver_path))
    solver.net.blobs["data"].data[...] = image
    solver.net.blobs["label"].data[...] = label
    crf = []
    for _ in range(40):
        solver.step(1)
        crf.append(float(solver.net.blobs["densecrf_loss"].data))
    assert all(np.isfinite(crf))
    # The loss -S'WS falls as the segmentation becomes confident and follows
    # the image's edges (we see about -15.5k -> -46k).
    assert crf[-1] < 2 * crf[0], crf[::8]


def run_child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=child_env(), timeout=120)


BAD_NET = """
    import caffe, tempfile
    caffe.set_mode_cpu()
    text = '''
    layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 1 dim: 3 dim: 4 dim: 5 }} }} }}
    layer {{ name: "prob" type: "Input" top: "prob" input_param {{ shape {{ dim: {n} dim: 2 dim: 4 dim: 5 }} }} }}
    layer {{ name: "crf" type: "DenseCRFLoss" bottom: "data" bottom: "prob" top: "loss"
      densecrf_loss_param {{ {param} }} }}
    '''
    with tempfile.NamedTemporaryFile('w', suffix='.prototxt', delete=False) as f:
        f.write(text)
    caffe.Net(f.name, caffe.TRAIN)
    print('constructed')
"""


@pytest.mark.parametrize("n,param,message", [
    (1, "bi_xy_std: -1", "DenseCRFLoss layer 'crf': bi_xy_std is -1; set densecrf_loss_param"),
    (1, "bi_rgb_std: 0", "bi_rgb_std is 0; set densecrf_loss_param"),
    (1, "scale_factor: 2", "scale_factor is 2; it must lie in (0, 1]"),
    (2, "", "bottom[0] (the image, 1 3 4 5 (60)) and bottom[1] (the probabilities, "
            "2 2 4 5 (80)) must agree in N, H and W"),
])
def test_bad_parameters_stop_with_a_message(caffe, n, param, message):
    result = run_child(BAD_NET.format(n=n, param=param))
    assert result.returncode != 0
    assert "constructed" not in result.stdout
    assert message in result.stderr, result.stderr[-2000:]


def test_backprop_to_the_image_stops_with_a_message(caffe):
    # The image comes out of a layer with parameters, so the net wants its
    # gradient unless propagate_down says otherwise.
    result = run_child("""
        import caffe, tempfile
        caffe.set_mode_cpu()
        text = '''
        layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 4 dim: 5 } } }
        layer { name: "img" type: "Convolution" bottom: "data" top: "img"
          convolution_param { num_output: 3 kernel_size: 1 weight_filler { type: "constant" value: 1 } } }
        layer { name: "score" type: "Convolution" bottom: "img" top: "score"
          convolution_param { num_output: 2 kernel_size: 1 weight_filler { type: "gaussian" std: 1 } } }
        layer { name: "prob" type: "Softmax" bottom: "score" top: "prob" }
        layer { name: "crf" type: "DenseCRFLoss" bottom: "img" bottom: "prob" top: "loss" }
        '''
        with tempfile.NamedTemporaryFile('w', suffix='.prototxt', delete=False) as f:
            f.write(text)
        net = caffe.Net(f.name, caffe.TRAIN)
        net.blobs['data'].data[...] = 50
        net.forward()
        net.backward()
        print('backward returned')
    """)
    assert result.returncode != 0
    assert "backward returned" not in result.stdout
    assert ("DenseCRFLoss layer 'crf' has no gradient for bottom[0] (the image); "
            "set its propagate_down: false") in result.stderr, result.stderr[-2000:]
