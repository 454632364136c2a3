"""`rloss bench`: how fast the DenseCRF loss is, against the published algorithm
and pydensecrf2, measured side by side in one process.

Four ways to get the same numbers (loss and -2 W S) for a batch:

- ``layer``: our DenseCRFLoss through pycaffe, forward + backward;
- ``lattice``: our permutohedral lattice alone, driven as the layer drives it,
  with its phases (build, splat, blur, slice) timed apart;
- ``published``: the published layer's algorithm restated in
  tools/bench/published.cpp (one lattice per image, one value_size-1 filtering
  per class, buffers allocated per filtering), compiled with Caffe's flags;
- ``pydensecrf2``: Krähenbühl's code from PyPI, one multi-class pass per image.

Before timing, every configuration checks that all four agree on the loss to
1e-3 (and the layer and the published algorithm on the gradient): a speed-up
of a wrong answer is worthless. The ROI rule differs: the layer leaves out
pixels whose channels are all 0, pydensecrf2 does not, so pydensecrf2 gets
S (.) R. Rounds take ten photographs in turn (a batch of one, each in its
round), so a row stands for all ten. Times are medians; speed-ups are ratios
within this one run.
"""
from __future__ import annotations

import ctypes
import csv
import math
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SOURCES = ["tools/bench/bench_lib.cpp", "tools/bench/published.cpp",
           "tools/bench/published.hpp", "include/caffe/util/permutohedral.hpp"]
SIGMA_XY, SIGMA_RGB = 100.0, 15.0  # the published nets' kernel


# ---------------------------------------------------------------- native side
def caffe_root() -> Path:
    root = Path(os.environ.get("RLOSS_CAFFE", REPO / ".caffe"))
    if not (root / "build" / "lib").is_dir():
        raise SystemExit(f"rloss bench: no Caffe build at {root}; run `make` first")
    return root.resolve()


def build_lib(out_dir: Path) -> Path:
    """Compiles tools/bench into a shared library (when a source is newer),
    with Caffe's release flags, linked to the libcaffe that holds our lattice."""
    root = caffe_root()
    lib = out_dir / "librloss_bench.so"
    libcaffe = root / "build" / "lib" / "libcaffe.so"
    newest = max((REPO / s).stat().st_mtime for s in SOURCES)
    newest = max(newest, libcaffe.stat().st_mtime if libcaffe.exists() else 0)
    if lib.exists() and lib.stat().st_mtime >= newest:
        return lib
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = ["g++", "-O3", "-DNDEBUG", "-fopenmp", "-fPIC", "-shared",
           "-I", str(REPO / "include"), "-I", str(REPO / "tools" / "bench"),
           str(REPO / "tools/bench/bench_lib.cpp"), str(REPO / "tools/bench/published.cpp"),
           "-L", str(root / "build" / "lib"), "-lcaffe",
           f"-Wl,-rpath,{root / 'build' / 'lib'}", "-o", str(lib)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"rloss bench: compiling {lib.name} failed:\n{done.stderr}")
    return lib


class Native:
    """ctypes face of librloss_bench.so."""

    def __init__(self, path: Path):
        self.lib = ctypes.CDLL(str(path))
        f, i, d, p = ctypes.c_float, ctypes.c_int, ctypes.c_double, ctypes.c_void_p
        self.lib.rb_set_threads.argtypes = [i]
        self.lib.rb_published.argtypes = [p, i, i, i, i, p, i, f, f, p, p]
        self.lib.rb_published.restype = d
        self.lib.rb_lattices_new.restype = p
        self.lib.rb_lattices_free.argtypes = [p]
        self.lib.rb_lattice.argtypes = [p, p, i, i, i, i, p, i, f, f, p, p, p]
        self.lib.rb_lattice.restype = d
        self.lib.rb_lattices_bytes.argtypes = [p]
        self.lib.rb_lattices_bytes.restype = d
        self.handle = self.lib.rb_lattices_new()
        self.outputs: Dict[str, np.ndarray] = {}

    def output(self, method: str, like: np.ndarray) -> np.ndarray:
        """The method's gradient buffer, kept between calls as the layer keeps
        its bottom's diff: a fresh array would put page faults in the timing
        (~3 ms for K = 21 at 513²)."""
        out = self.outputs.get(method)
        if out is None or out.shape != like.shape:
            out = self.outputs[method] = np.empty_like(like)
        return out

    def fresh(self) -> None:
        """Drops the lattices kept from earlier batches."""
        self.lib.rb_lattices_free(self.handle)
        self.handle = self.lib.rb_lattices_new()

    def set_threads(self, n: int) -> None:
        self.lib.rb_set_threads(n)

    def published(self, image: np.ndarray,
                  prob: np.ndarray) -> Tuple[float, np.ndarray, np.ndarray]:
        n, c, h, w = image.shape
        grad = self.output("published", prob)
        times = np.zeros(2)
        loss = self.lib.rb_published(image.ctypes.data, n, c, h, w, prob.ctypes.data,
                                     prob.shape[1], SIGMA_XY, SIGMA_RGB, grad.ctypes.data,
                                     times.ctypes.data)
        return loss, grad, times

    def lattice(self, image: np.ndarray,
                prob: np.ndarray) -> Tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        n, c, h, w = image.shape
        grad = self.output("lattice", prob)
        times = np.zeros(4)
        vertices = np.zeros(n, np.int32)
        loss = self.lib.rb_lattice(self.handle, image.ctypes.data, n, c, h, w,
                                   prob.ctypes.data, prob.shape[1], SIGMA_XY, SIGMA_RGB,
                                   grad.ctypes.data, times.ctypes.data, vertices.ctypes.data)
        return loss, grad, times, vertices

    def lattice_bytes(self) -> float:
        return self.lib.rb_lattices_bytes(self.handle)


# ---------------------------------------------------------------- inputs
def photographs(size: int, count: int) -> Tuple[np.ndarray, str]:
    """count RGB photographs resized to size x size, as N x 3 x S x S float32
    holding whole 0..255 values (what pydensecrf2's uint8 input can express):
    the Weizmann horses when ../shared has them, else scikit-image's samples."""
    from skimage import data as skdata
    from skimage import io, transform

    shared = Path(os.environ.get("RLOSS_SHARED", REPO.parent / "shared"))
    horses = shared / "data" / "weizmann_horse" / "JPEGImages"
    if horses.is_dir():
        files = sorted(horses.glob("*.jpg"))[:count]
        images = [io.imread(f) for f in files]
        source = "Weizmann horses"
    else:
        samples = [skdata.astronaut(), skdata.chelsea(), skdata.coffee(), skdata.rocket()]
        images = [samples[i % len(samples)] for i in range(count)]
        source = "scikit-image samples (astronaut, chelsea, coffee, rocket)"
    out = np.empty((count, 3, size, size), np.float32)
    for i, img in enumerate(images * (count // len(images) + 1)):
        if i == count:
            break
        img = transform.resize(img[..., :3], (size, size), order=1, preserve_range=True,
                               anti_aliasing=False)
        out[i] = np.clip(np.round(img), 0, 255).transpose(2, 0, 1)
    return out, source


def smooth_softmax(rng: np.random.Generator, n: int, k: int, size: int) -> np.ndarray:
    """Softmax of smooth random logits: regions, soft borders, like a net's output.
    The logits are a random 6 x 6 grid upsampled bilinearly (two small
    matrix products: a spline zoom takes minutes at batch 10)."""
    coarse = rng.normal(0, 3, (n, k, 6, 6))
    up = np.stack([np.interp(np.linspace(0, 5, size), np.arange(6), row)
                   for row in np.eye(6)], 1)  # size x 6 interpolation matrix
    logits = np.einsum("yi,nkij,xj->nkyx", up, coarse, up, optimize=True)
    e = np.exp(logits - logits.max(1, keepdims=True))
    return np.ascontiguousarray(e / e.sum(1, keepdims=True), dtype=np.float32)


def roi(image: np.ndarray) -> np.ndarray:
    """The layer's rule: outside where all channels truncate to 0."""
    return (np.trunc(image) != 0).any(1, keepdims=True).astype(np.float32)


# ---------------------------------------------------------------- methods
def layer_net(image: np.ndarray, prob: np.ndarray, scale: float = 1.0) -> Any:
    """A net of two inputs, holding image and prob, and our DenseCRFLoss
    (loss weight 1)."""
    import caffe
    from caffe import layers as L
    from .gradient import _net_from_proto

    ns = caffe.NetSpec()
    ns.data = L.Input(shape=dict(dim=list(image.shape)))
    ns.prob = L.Input(shape=dict(dim=list(prob.shape)))
    ns.loss = L.DenseCRFLoss(ns.data, ns.prob, propagate_down=[False, True], loss_weight=1,
                             densecrf_loss_param=dict(bi_xy_std=SIGMA_XY, bi_rgb_std=SIGMA_RGB,
                                                      scale_factor=scale))
    proto = ns.to_proto()
    proto.force_backward = True
    caffe.set_mode_cpu()
    net = _net_from_proto(proto, caffe.TRAIN)
    net.blobs["data"].data[...] = image
    net.blobs["prob"].data[...] = prob
    return net


class PyDenseCRF:
    """pydensecrf2 giving the layer's (loss, gradient): one inference step
    without unary leaves -W (S (.) R) in its second buffer.

    What is timed is pydensecrf2's own work and the copies its layout needs
    (S into its point-major matrix, the gradient back to planes), as the
    layer's time includes its transposes. Its matrices and the other buffers
    are kept between calls, filled in place through their buffer views, as
    the layer keeps its own. Up to 01c9504 each call made three Eigen
    matrices from numpy arrays (two of them zeros that stepInference
    overwrites), a fresh gradient array and a float64 copy for the loss:
    allocations and copies that took longer than pydensecrf2's filtering.

    ``phases`` holds the last call's seconds in its two parts, summed over
    the batch: the lattice (DenseCRF2D and addPairwiseBilateral, which also
    filters a plane of ones for its normalisation) and the step (S in, the
    K-class filtering, its softmax of the result, the gradient out)."""

    def __init__(self) -> None:
        self.shape: Tuple[int, ...] = ()
        self.phases = np.zeros(2)
        self.x = self.grad = np.empty(0, np.float32)
        self.q: Any = None  # S (.) R, then its softmax step (overwritten)
        self.scratch: Any = None
        self.out: Any = None  # -W S

    def __call__(self, image: np.ndarray, prob: np.ndarray) -> Tuple[float, np.ndarray]:
        import pydensecrf.densecrf as dcrf
        import pydensecrf.eigen as eigen

        n, k, h, w = prob.shape
        if self.shape != prob.shape:
            self.shape = prob.shape
            self.x, self.grad = np.empty_like(prob), np.empty_like(prob)
            self.q, self.scratch, self.out = (
                eigen.matrixXf(np.zeros((k, h * w), np.float32)) for _ in range(3))
        np.multiply(prob, roi(image), out=self.x)
        loss = 0.0
        self.phases[:] = 0
        for i in range(n):
            rgb = np.ascontiguousarray(image[i].transpose(1, 2, 0).astype(np.uint8))
            t0 = time.perf_counter()
            crf = dcrf.DenseCRF2D(w, h, k)
            crf.addPairwiseBilateral(sxy=SIGMA_XY, srgb=SIGMA_RGB, rgbim=rgb, compat=1,
                                     kernel=dcrf.DIAG_KERNEL,
                                     normalization=dcrf.NO_NORMALIZATION)
            t1 = time.perf_counter()
            x = self.x[i].reshape(k, -1)
            np.asarray(self.q)[...] = x  # into its column-major K x N
            crf.stepInference(self.q, self.scratch, self.out)
            g = self.grad[i].reshape(k, -1)
            np.multiply(np.asarray(self.out), 2.0 / n, out=g)  # -2 W S / N
            self.phases += (t1 - t0, time.perf_counter() - t1)
            # -x' W x = x' (-W x) = (N / 2) x' g
            loss += n / 2 * float(np.vdot(x.reshape(-1), g.reshape(-1)))
        return loss / n, self.grad


# ---------------------------------------------------------------- measuring
@dataclass
class Config:
    size: int
    classes: int
    batch: int
    threads: int

    @property
    def label(self) -> str:
        return f"{self.size}² K={self.classes} N={self.batch} T={self.threads}"


@dataclass
class Result:
    config: Config
    times: Dict[str, List[float]] = field(default_factory=dict)
    # lattice: build, splat, blur, slice (s); NaN until measured
    phases: np.ndarray = field(default_factory=lambda: np.full(4, np.nan))
    # published: build, filtering (s)
    published_phases: np.ndarray = field(default_factory=lambda: np.full(2, np.nan))
    # pydensecrf2: lattice, step (s; see PyDenseCRF)
    pydensecrf_phases: np.ndarray = field(default_factory=lambda: np.full(2, np.nan))
    vertices: float = 0.0
    loss: float = 0.0

    def median(self, method: str) -> Optional[float]:
        t = self.times.get(method)
        return statistics.median(t) if t else None

    def seconds(self, method: str) -> float:
        """The median of a method every configuration times."""
        t = self.median(method)
        if t is None:
            raise KeyError(f"{self.config.label}: {method} was not timed")
        return t


def timed(fn: Callable[[], object], reps: int) -> List[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


# Photographs a configuration's rounds take in turn, so that a row of one
# image stands for a set of photographs, not for whichever sorts first (the
# first horse makes the smallest lattice of the ten, ~0.85x the mean time).
POOL = 10


def turns(pool: int, batch: int) -> List[np.ndarray]:
    """The batches a configuration's rounds cycle through: consecutive
    photographs of the pool, wrapping, until every one has been used
    equally often (pool / gcd(pool, batch) batches)."""
    count = pool // math.gcd(pool, batch)
    return [np.arange(t * batch, (t + 1) * batch) % pool for t in range(count)]


def measure(cfg: Config, native: Native, reps: int, rng: np.random.Generator,
            with_pydensecrf: bool, log: Callable[[str], None],
            min_seconds: float = 0.0) -> Result:
    """Times every method round robin: reps rounds, and more (up to 10 x reps)
    until min_seconds have passed, so that a configuration of a few ms gets a
    steadier median than five runs give; then on to a whole number of cycles
    of turns(), each round taking the next batch of photographs."""
    pool, _ = photographs(cfg.size, max(cfg.batch, POOL))
    pool_prob = smooth_softmax(rng, len(pool), cfg.classes, cfg.size)
    batches = [(np.ascontiguousarray(pool[t]), np.ascontiguousarray(pool_prob[t]))
               for t in turns(len(pool), cfg.batch)]
    del pool, pool_prob
    native.set_threads(cfg.threads)
    # A net per batch, each holding its inputs: copying a batch into one net
    # before timing it would hand the layer its inputs in cache.
    nets = [layer_net(image, prob) for image, prob in batches]
    pydensecrf = PyDenseCRF()

    def layer(i: int) -> Tuple[float, np.ndarray]:
        loss = float(nets[i].forward()["loss"])
        nets[i].backward()
        return loss, nets[i].blobs["prob"].diff

    # Same answers first (the warm-up run of each method), for every batch.
    res = Result(cfg)
    losses = []
    for i, (image, prob) in enumerate(batches):
        loss_layer, grad_layer = layer(i)
        grad_layer = grad_layer.copy()
        loss_pub, grad_pub, _ = native.published(image, prob)
        loss_lat, grad_lat, _, _ = native.lattice(image, prob)
        checks = {"published": loss_pub, "lattice": loss_lat}
        if with_pydensecrf:
            checks["pydensecrf2"], _ = pydensecrf(image, prob)
        which = f"{cfg.label}" + (f", batch {i + 1} of {len(batches)}" if len(batches) > 1
                                  else "")
        for name, value in checks.items():
            if rel(value, loss_layer) > 1e-3:
                raise SystemExit(f"rloss bench: {which}: {name} gives loss {value:.6g}, the "
                                 f"layer {loss_layer:.6g}: they must agree to 1e-3 before "
                                 "timing")
        for name, g in (("published", grad_pub), ("lattice", grad_lat)):
            err = np.linalg.norm(g - grad_layer) / np.linalg.norm(grad_layer)
            if err > 1e-3:
                raise SystemExit(f"rloss bench: {which}: {name}'s gradient differs from the "
                                 f"layer's by {err:.2e} (relative L2); expected < 1e-3")
        losses.append(loss_layer)
    res.loss = float(np.mean(losses))

    phases, pub_phases, py_phases, vertices = [], [], [], []
    turn = 0  # the batch this round times

    def lattice() -> None:
        _, _, t, v = native.lattice(*batches[turn])
        phases.append(t)
        vertices.append(float(v.mean()))

    def published() -> None:
        pub_phases.append(native.published(*batches[turn])[2])

    def pydensecrf2() -> None:
        pydensecrf(*batches[turn])
        py_phases.append(pydensecrf.phases.copy())

    methods: Dict[str, Callable[[], object]] = dict(
        layer=lambda: layer(turn), lattice=lattice, published=published)
    if with_pydensecrf:
        methods["pydensecrf2"] = pydensecrf2
    if cfg.threads > 1:
        # A second thread's gain, from the same rounds: rows timed a minute
        # apart differ by more than that gain when the VM drifts.
        def on_one_thread(fn: Callable[[], object]) -> Callable[[], object]:
            def run() -> object:
                native.set_threads(1)
                try:
                    return fn()
                finally:
                    native.set_threads(cfg.threads)
            return run
        methods["layer_1thread"] = on_one_thread(lambda: layer(turn))
        methods["published_1thread"] = on_one_thread(
            lambda: native.published(*batches[turn]))
    # Round robin, so that the machine's drift (other tenants, clocks) falls
    # on every method alike, in a fresh order each round: in a fixed one each
    # method would always follow the same other, and what that one leaves
    # behind (the published algorithm allocates its buffers per call) would
    # fall on one method only.
    order = random.Random(0)
    names = list(methods)
    start, rounds = time.perf_counter(), 0
    while (rounds < reps or rounds % len(batches) or
           (rounds < 10 * reps and time.perf_counter() - start < min_seconds)):
        turn = rounds % len(batches)
        order.shuffle(names)
        for name in names:
            res.times.setdefault(name, []).extend(timed(methods[name], 1))
        rounds += 1
    res.phases = np.median(np.array(phases), 0)
    res.published_phases = np.median(np.array(pub_phases), 0)
    if py_phases:
        res.pydensecrf_phases = np.median(np.array(py_phases), 0)
    res.vertices = float(np.mean(vertices))
    log(f"  {cfg.label:<28} layer {1e3 * res.seconds('layer'):8.1f} ms   published "
        f"{1e3 * res.seconds('published'):8.1f} ms" +
        (f"   pydensecrf2 {1e3 * res.seconds('pydensecrf2'):8.1f} ms" if with_pydensecrf else ""))
    return res


def measure_scales(size: int, k: int, scales: Sequence[float], native: Native, reps: int,
                   rng: np.random.Generator) -> Dict[float, float]:
    """Median seconds of the layer's forward + backward at each scale_factor
    (one image, one thread), timed round robin through the layer, since the
    resampling in and out is part of what scale_factor costs. Rounds take the
    POOL photographs in turn, as the one-image rows do, in whole cycles (at
    least reps rounds): a photograph's lattice, and so its time, depends on
    its colours."""
    pool, _ = photographs(size, POOL)
    prob = smooth_softmax(rng, len(pool), k, size)
    native.set_threads(1)
    # A net per photograph and scale, as in measure(): none is handed its
    # inputs in cache.
    nets = {s: [layer_net(pool[i:i + 1], prob[i:i + 1], s) for i in range(len(pool))]
            for s in scales}
    for s in scales:  # the first call allocates
        for net in nets[s]:
            net.forward()
            net.backward()
    times: Dict[float, List[float]] = {s: [] for s in scales}
    order, names = random.Random(1), list(scales)
    rounds = -(-max(reps, 1) // len(pool)) * len(pool)
    for r in range(rounds):
        order.shuffle(names)
        for s in names:
            net = nets[s][r % len(pool)]
            t0 = time.perf_counter()
            net.forward()
            net.backward()
            times[s].append(time.perf_counter() - t0)
    return {s: float(np.median(t)) for s, t in times.items()}


def copy_bandwidth() -> float:
    """Bytes per second that one core reads plus writes in a large copy."""
    a = np.ones(32 << 20, np.float32)
    b = np.empty_like(a)
    best = min(timed(lambda: np.copyto(b, a), 5))
    return 2 * a.nbytes / best


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]


def heap_bytes() -> int:
    """Bytes malloc has handed out and not taken back (glibc's mallinfo2).
    Unlike RSS it does not miss memory placed in pages an earlier free left
    resident, which made small RSS deltas read as zero or less."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def memory_report(native: Native, size: int, classes: int, batch: int,
                  iterations: int) -> Dict[str, float]:
    """The layer's memory for one batch: the heap bytes in use from before
    the net is built to the most after any forward/backward, less its input
    and diff blobs; the lattices' share; and the growth of the heap and of
    RSS between iteration 3 and the last (leaks would show here). One
    thread, so every allocation is in the main arena that mallinfo2 sees."""
    rng = np.random.default_rng(1)
    image, _ = photographs(size, batch)
    prob = smooth_softmax(rng, batch, classes, size)
    native.set_threads(1)
    before = heap_bytes()
    net = layer_net(image, prob)
    blobs = image.nbytes + 2 * prob.nbytes  # data, prob, prob's diff
    heap, rss = [], []
    for _ in range(iterations):
        net.forward()
        net.backward()
        heap.append(heap_bytes())
        rss.append(rss_bytes())
    native.fresh()
    native.lattice(image, prob)
    third = min(2, len(rss) - 1)
    return dict(layer_bytes=float(max(heap) - before - blobs), blob_bytes=float(blobs),
                heap_growth_bytes=float(heap[-1] - heap[third]),
                growth_bytes=float(rss[-1] - rss[third]),
                iterations=float(iterations), lattice_bytes=native.lattice_bytes())


def memory_in_fresh_process(size: int, classes: int, batch: int,
                            iterations: int) -> Dict[str, float]:
    """memory_report in a new interpreter: this one's heap already holds
    (and reuses) the earlier configurations' memory."""
    import json
    code = ("import json, sys; from pathlib import Path; from rloss import bench; "
            "n = bench.Native(bench.build_lib(bench.REPO / 'build' / 'bench')); "
            f"print(json.dumps(bench.memory_report(n, {size}, {classes}, {batch}, {iterations})))")
    env = dict(os.environ, GLOG_minloglevel="2")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- reporting
METHODS = ["layer", "lattice", "published", "pydensecrf2"]
# Timed in the rounds of a configuration with more threads, on one thread.
ONE_THREAD = {"layer": "layer_1thread", "published": "published_1thread"}


def write_csv(results: Sequence[Result], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["size", "classes", "batch", "threads", "method", "median_ms", "min_ms",
                    "reps", "ms_per_image", "loss", "vertices"])
        for r in results:
            c = r.config
            for m in METHODS + list(ONE_THREAD.values()):
                t = r.times.get(m)
                if not t:
                    continue
                med = statistics.median(t)
                w.writerow([c.size, c.classes, c.batch, c.threads, m, f"{1e3 * med:.3f}",
                            f"{1e3 * min(t):.3f}", len(t), f"{1e3 * med / c.batch:.3f}",
                            f"{r.loss:.9g}", f"{r.vertices:.0f}"])


def plot(results: Sequence[Result], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted({r.config.classes for r in results}, reverse=True)
    fig, axes = plt.subplots(1, len(ks), figsize=(5.5 * len(ks), 4.2), sharey=True,
                             squeeze=False)
    axes = axes[0]
    styles = {"layer": "o-", "lattice": "s--", "published": "^-", "pydensecrf2": "v-"}
    for ax, k in zip(axes, ks):
        for m in METHODS:
            pts = sorted((r.config.size ** 2, 1e3 * t / r.config.batch)
                         for r in results if r.config.classes == k and r.config.batch == 1
                         and r.config.threads == 1 and (t := r.median(m)) is not None)
            if pts:
                ax.plot(*zip(*pts), styles[m], label=m)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("pixels per image")
        ax.set_title(f"K = {k}, one image, one thread: forward + backward")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms per image")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(results: Sequence[Result]) -> List[str]:
    lines = ["| size | K | batch | threads | layer (ms) | lattice (ms) | published (ms) | "
             "pydensecrf2 (ms) | × published | × pydensecrf2 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        c = r.config
        cell = {m: r.median(m) for m in METHODS}

        def fmt(t: Optional[float]) -> str:
            return f"{1e3 * t:.1f}" if t is not None else "–"

        def ratio(t: Optional[float]) -> str:
            layer = cell["layer"]
            return f"{t / layer:.1f}×" if t is not None and layer is not None else "–"

        lines.append(f"| {c.size}² | {c.classes} | {c.batch} | {c.threads} | "
                     f"{fmt(cell['layer'])} | {fmt(cell['lattice'])} | "
                     f"{fmt(cell['published'])} | {fmt(cell['pydensecrf2'])} | "
                     f"{ratio(cell['published'])} | {ratio(cell['pydensecrf2'])} |")
    return lines


def run(out: Path, sizes: Sequence[int], classes: Sequence[int], batches: Sequence[int],
        threads: Sequence[int], reps: int, log: Callable[[str], None] = print,
        min_seconds: float = 0.0) -> List[str]:
    """Runs every configuration, writes OUT/bench.csv, OUT/bench.png and
    OUT/bench.md, and returns the report's lines."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    out.mkdir(parents=True, exist_ok=True)
    native = Native(build_lib(REPO / "build" / "bench"))
    pool, source = photographs(min(sizes), POOL)
    distinct = len(np.unique(pool.reshape(POOL, -1), axis=0))
    pictures = f"{POOL} photographs" if distinct == POOL else \
        f"{POOL} pictures ({distinct} photographs repeated)"
    runs = f"median of {reps} run{'s' if reps > 1 else ''}" + (
        f" or more (rounds go on for {min_seconds:g} s a configuration, up to {10 * reps})"
        if min_seconds > 0 else "") + (
        f"; rounds take {pictures} in turn, a batch at a time, in whole cycles")
    log(f"rloss bench: {source}; σxy {SIGMA_XY:g}, σrgb {SIGMA_RGB:g}; {runs}")
    rng = np.random.default_rng(0)
    results = []
    for size in sizes:
        for k in classes:
            for n in batches:
                for t in threads:
                    # pydensecrf2 is single-threaded: timed on one thread only.
                    results.append(measure(Config(size, k, n, t), native, reps, rng,
                                           with_pydensecrf=t == 1, log=log,
                                           min_seconds=min_seconds))
    write_csv(results, out / "bench.csv")
    plot(results, out / "bench.png")

    lines = [f"# DenseCRF loss speed ({source})", "",
             f"Forward + backward, σxy {SIGMA_XY:g}, σrgb {SIGMA_RGB:g}, {runs}; "
             "× columns: how many times faster the layer is, in this run.", ""]
    lines += table(results)
    # Per core: one thread against one thread; and the gain from more threads,
    # against one thread timed in the same rounds.
    scaling = []
    for r in results:
        c = r.config
        if c.threads > 1:
            gain = {m: r.seconds(one) / r.seconds(m) for m, one in ONE_THREAD.items()}
            scaling.append(f"| {c.size}² | {c.classes} | {c.batch} | {c.threads} | "
                           f"{gain['layer']:.2f}× | {gain['published']:.2f}× |")
    if scaling:
        lines += ["", "More threads (time on one thread / time on T, both timed in the "
                  "rounds of the T row):", "",
                  "| size | K | batch | T | layer | published |", "|---|---|---|---|---|---|"]
        lines += scaling

    size, k = min(sizes), max(classes)
    if size >= 2:  # half of one pixel is nothing
        log(f"  scale_factor 1 and 0.5, {size}² K={k}")
        scaled = measure_scales(size, k, (1.0, 0.5), native, reps, rng)
        lines += ["", f"scale_factor (the layer, {size}² K={k}, one image, one thread, medians "
                  f"over the {POOL} photographs in turn): "
                  f"1 in {1e3 * scaled[1.0]:.2f} ms, 0.5 in {1e3 * scaled[0.5]:.2f} ms "
                  f"({scaled[1.0] / scaled[0.5]:.2f}× faster; the lattice has a quarter of "
                  "the points, the resampling of S in and of the gradient out is at full "
                  "size)."]

    bandwidth = copy_bandwidth()
    lines += ["", "Where the lattice's time goes (one thread, one image: medians over the "
              f"{POOL} photographs in turn; vertices their mean), and the bound "
              "set by reading S and the image and writing the gradient once at this "
              f"machine's copy bandwidth ({bandwidth / 1e9:.1f} GB/s). pydensecrf2's two "
              "parts: its lattice (addPairwiseBilateral, which also filters a plane of "
              "ones for a normalisation) and its step (S in, the K-class filtering, a "
              "softmax of the result, the gradient out):", "",
              "| size | K | vertices | build | splat | blur + dot | slice | total | bound | "
              "× bound | published: build, filtering | pydensecrf2: lattice, step |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        c = r.config
        if c.batch != 1 or c.threads != 1:
            continue
        p = 1e3 * r.phases
        pixels = c.size * c.size
        bound = (2 * c.classes + 3) * 4 * pixels / bandwidth * 1e3
        pb, py = 1e3 * r.published_phases, 1e3 * r.pydensecrf_phases
        lines.append(f"| {c.size}² | {c.classes} | {r.vertices:.0f} | {p[0]:.2f} | {p[1]:.2f} | "
                     f"{p[2]:.2f} | {p[3]:.2f} | {p.sum():.2f} | {bound:.2f} | "
                     f"{p.sum() / bound:.0f}× | {pb[0]:.1f}, {pb[1]:.1f} | "
                     f"{py[0]:.1f}, {py[1]:.1f} |")

    big = max(batches)
    mem = memory_in_fresh_process(min(sizes), max(classes), big, 30)
    lines += ["", f"Memory, {min(sizes)}² K={max(classes)} batch {big}: the layer holds "
              f"{mem['layer_bytes'] / 2**20:.0f} MiB beyond its bottoms' data and diff "
              f"({mem['blob_bytes'] / 2**20:.0f} MiB); its lattices "
              f"{mem['lattice_bytes'] / 2**20:.0f} MiB of that. "
              f"From iteration 3 to {int(mem['iterations'])} the heap grew "
              f"{mem['heap_growth_bytes'] / 2**20:.1f} MiB and the process RSS "
              f"{mem['growth_bytes'] / 2**20:.1f} MiB."]
    (out / "bench.md").write_text("\n".join(lines) + "\n")
    return lines
