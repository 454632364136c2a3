"""`caffe train` (the binary) trains a small net that holds DenseCRFLoss."""
from __future__ import annotations

import re
import subprocess

import pytest

from conftest import child_env


def test_caffe_train_runs_a_densecrf_solver(caffe, caffe_bin, tmp_path):
    L = caffe.layers
    ns = caffe.NetSpec()
    ns.data, ns.label = L.DummyData(
        shape=[dict(dim=[2, 3, 20, 24]), dict(dim=[2, 1, 20, 24])],
        data_filler=[dict(type="uniform", min=1, max=255), dict(type="constant", value=1)],
        ntop=2)
    ns.score = L.Convolution(ns.data, num_output=2, kernel_size=3, pad=1,
                             weight_filler=dict(type="gaussian", std=0.01))
    ns.prob = L.Softmax(ns.score)
    ns.pce_loss = L.SoftmaxWithLoss(ns.score, ns.label, loss_param=dict(ignore_label=255))
    ns.densecrf_loss = L.DenseCRFLoss(ns.data, ns.prob, propagate_down=[False, True],
                                      loss_weight=1e-3,
                                      densecrf_loss_param=dict(bi_xy_std=10, bi_rgb_std=15))
    net = tmp_path / "train.prototxt"
    net.write_text(str(ns.to_proto()))
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'train_net: "{net}"\nbase_lr: 0.001\nlr_policy: "fixed"\n'
                      f'max_iter: 4\ndisplay: 1\nsolver_mode: CPU\n'
                      f'snapshot_prefix: "{tmp_path}/toy"\n')
    result = subprocess.run([str(caffe_bin), "train", f"--solver={solver}"],
                            capture_output=True, text=True, env=child_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    values = [float(v) for v in re.findall(r"Train net output #\d+: densecrf_loss = (\S+)",
                                           result.stderr)]
    assert len(values) == 4, result.stderr[-3000:]
    # 1e-3 * -(1/N) sum S'WS over 480 pixels with ~all weight on neighbours.
    assert all(v < -1 and v == v for v in values), values
    assert (tmp_path / "toy_iter_4.caffemodel").exists()


@pytest.mark.parametrize("policy", [
    'lr_policy: "fixed"', 'lr_policy: "step" gamma: 0.5 stepsize: 2',
    'lr_policy: "exp" gamma: 0.9', 'lr_policy: "inv" gamma: 0.3 power: 0.75',
    'lr_policy: "multistep" gamma: 0.1 stepvalue: 1 stepvalue: 4',
    'lr_policy: "poly" power: 0.9', 'lr_policy: "sigmoid" gamma: 0.8 stepsize: 3'])
def test_logged_learning_rate_is_caffes(caffe, caffe_bin, tmp_path, policy):
    from google.protobuf import text_format
    from caffe.proto import caffe_pb2
    from rloss import logs
    from rloss.solve import learning_rate
    L = caffe.layers
    ns = caffe.NetSpec()
    ns.data, ns.target = L.DummyData(shape=[dict(dim=[1, 2, 3, 3]), dict(dim=[1, 1, 3, 3])],
                                     data_filler=dict(type="gaussian"), ntop=2)
    ns.out = L.Convolution(ns.data, num_output=1, kernel_size=1,
                           weight_filler=dict(type="gaussian", std=0.1))
    ns.loss = L.EuclideanLoss(ns.out, ns.target)
    net = tmp_path / "net.prototxt"
    net.write_text(str(ns.to_proto()))
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'train_net: "{net}" base_lr: 0.01 {policy} max_iter: 6 display: 1 '
                      f'solver_mode: CPU snapshot_prefix: "{tmp_path}/s"\n')
    r = subprocess.run([str(caffe_bin), "train", f"--solver={solver}"],
                       capture_output=True, text=True, env=child_env(), timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    caffes = {row["iter"]: row["lr"] for row in logs.parse(r.stderr) if "lr" in row}
    assert sorted(caffes) == list(range(6))
    sp = text_format.Parse(solver.read_text(), caffe_pb2.SolverParameter())
    ours = {it: learning_rate(sp, it) for it in caffes}
    assert ours == pytest.approx(caffes, rel=1e-5)  # Caffe logs six digits
