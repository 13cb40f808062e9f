"""tinyadapt.adapt.Prototypes: the prototype head (issue 4, first slice).

Fixed problem: the 64-32-10 digits MLP of tinyadapt_host.demo_models (seed 0,
97 % on the 500 held-out digits), features of its hidden layer (layer 1, 32
int8 values after ReLU). Drift: x * 0.6 + 0.3 clipped to [0, 1] (gain and
offset the model never saw). Support set: 5 samples per class from the drifted
held-out digits (RandomState(0)); query: the other 450.

* float reference: numpy nearest class mean (float means) on the dequantized
  features agrees with the integer head on >= 95 % of the query samples; a
  numpy model of the stated integer rule agrees on 100 %;
* drift: the original head vs the prototypes, asserted margin +0.20;
* held-out class: classes 0-8 then class 9 from 5 samples, recall >= 0.80;
* parity and memory on the unix MicroPython with the rp2040 heap (the library
  compiled with mpy-cross, the x64 natmod): identical predictions and
  state_bytes(); gc.mem_alloc() growth within cost()['ram_bytes'] +
  objects_bytes (and not below ram_bytes);
* bad inputs.
"""
import glob
import importlib.util
import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import require, ROOT, run_mpy


@pytest.fixture(autouse=True)
def _torch_installed():
    # torch is in requirements.txt: a developer without it skips, CI fails
    require(importlib.util.find_spec("torch") is not None, "torch",
            "pip install -r requirements.txt (torch==2.13.0, the CPU build)")


LAYER = 1
SHOTS = 5


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from tinyadapt_host import demo_models as dm
    import tinyadapt
    module, calib, (xt, yt) = dm.train_digits_mlp()
    path = str(tmp_path_factory.mktemp("adapt") / "digits.tam")
    conv = dm.convert(module, calib, path)
    xd = np.clip(xt * 0.6 + 0.3, 0, 1).astype(np.float32)
    return {"path": path, "model": tinyadapt.Model.load(path),
            "clean": dm.quantize_inputs(conv, xt), "drift": dm.quantize_inputs(conv, xd),
            "y": yt.astype(int)}


def support(y, classes=range(10), shots=SHOTS, seed=0):
    rng = np.random.RandomState(seed)
    idx = []
    for c in classes:
        idx += list(rng.choice(np.where(y == c)[0], shots, replace=False))
    return np.array(idx)


def make(digits, **kw):
    from tinyadapt import adapt
    kw.setdefault("layer", LAYER)
    kw.setdefault("max_classes", 10)
    return adapt.Prototypes(digits["model"], **kw)


def feats(digits, xq):
    m = digits["model"]
    return np.array([np.frombuffer(m.features(r.tobytes(), LAYER, True), np.int8) for r in xq])


def test_float_and_integer_reference(digits):
    x, y = digits["drift"], digits["y"]
    idx = support(y)
    rest = np.setdiff1d(np.arange(len(y)), idx)
    p = make(digits)
    for i in idx:
        p.step(x[i].tobytes(), int(y[i]), quantized=True)
    got = np.array([p.predict(x[i].tobytes(), True) for i in rest])
    t = digits["model"].tam.tensors[digits["model"].layers[LAYER].output]
    f = feats(digits, x).astype(np.int64)
    # float: dequantized features, float means, squared distance
    real = t.scale * (f - t.zero_point)
    means = np.array([real[idx][y[idx] == c].mean(0) for c in range(10)])
    ref = np.argmin(((real[rest][:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    agree = np.mean(ref == got)
    print("float NCM agreement %.4f" % agree)
    assert agree >= 0.95
    # integer rule of the docstring, in numpy: exact
    sums = np.array([f[idx][y[idx] == c].sum(0) for c in range(10)])
    n = np.array([(y[idx] == c).sum() for c in range(10)])[:, None]
    m = np.where(sums >= 0, (2 * sums + n) // (2 * n), -((n - 2 * sums) // (2 * n)))
    b = -((m * m).sum(1) >> 1)
    score = f[rest] @ m.T + b
    assert np.array_equal(np.argmax(score, axis=1), got)
    assert bytes(p.means) == m.astype(np.int8).tobytes()
    assert list(p.bias) == list(b)
    assert list(p.counts) == [SHOTS] * 10


def _int_rule(f, labels, n_cls):
    """The docstring's integer rule in numpy: (means, bias, scores)."""
    f = f.astype(np.int64)
    sums = np.array([f[labels == c].sum(0) for c in range(n_cls)])
    n = np.maximum(np.array([(labels == c).sum() for c in range(n_cls)]), 1)[:, None]
    m = np.where(sums >= 0, (2 * sums + n) // (2 * n), -((n - 2 * sums) // (2 * n)))
    return m, -((m * m).sum(1) >> 1)


@pytest.mark.parametrize("layer", [0, 1])
def test_exact_ordering_random(digits, layer):
    """Random int8 inputs and random labels: class means close together, so the
    refinement passes run; the head equals the integer rule (argmax, ties to the
    lowest index) on every query. Layer 0 is the input itself (64 values over
    the whole int8 range, 5 passes at most)."""
    rng = np.random.RandomState(3)
    m = digits["model"]
    xs = rng.randint(-128, 128, size=(400, 64)).astype(np.int8)
    ys = rng.randint(0, 7, size=200)
    p = make(digits, layer=layer, max_classes=7)
    for i in range(200):
        p.step(xs[i].tobytes(), int(ys[i]), quantized=True)
    f = np.array([np.frombuffer(m.features(r.tobytes(), layer, True), np.int8) for r in xs])
    means, b = _int_rule(f[:200], ys, 7)
    assert bytes(p.means) == means.astype(np.int8).tobytes()
    score = f[200:].astype(np.int64) @ means.T + b
    got = np.array([p.predict(r.tobytes(), True) for r in xs[200:]])
    assert np.array_equal(np.argmax(score, axis=1), got)
    top2 = np.sort(score, axis=1)[:, -2:]
    close = int(np.sum(top2[:, 1] - top2[:, 0] < 2 ** p.k0))
    print("layer %d: %d of 200 queries have their top two scores within 2^k0 (k0 = %d)"
          % (layer, close, p.k0))
    assert close > 0


def test_learns_under_drift(digits):
    x, y = digits["drift"], digits["y"]
    m = digits["model"]
    idx = support(y)
    rest = np.setdiff1d(np.arange(len(y)), idx)
    clean = np.mean([m.predict(r.tobytes(), True) for r in digits["clean"][rest]] == y[rest])
    before = np.mean([m.predict(r.tobytes(), True) for r in x[rest]] == y[rest])
    p = make(digits)
    for i in idx:
        p.step(x[i].tobytes(), int(y[i]), quantized=True)
    after = p.evaluate([x[i].tobytes() for i in rest], list(y[rest]), quantized=True)
    print("clean %.3f, drifted: original head %.3f, prototypes (%d per class) %.3f"
          % (clean, before, SHOTS, after))
    assert after >= before + 0.20
    assert after >= 0.85


def test_held_out_class(digits):
    x, y = digits["drift"], digits["y"]
    idx = support(y, range(9))
    new = support(y, [9], seed=1)
    p = make(digits)
    for i in idx:
        p.step(x[i].tobytes(), int(y[i]), quantized=True)
    assert p.classes() == list(range(9))
    for i in new:
        p.step(x[i].tobytes(), 9, quantized=True)
    rest = np.setdiff1d(np.where(y == 9)[0], new)
    recall = np.mean([p.predict(x[i].tobytes(), True) == 9 for i in rest])
    others = np.setdiff1d(np.arange(len(y)), np.concatenate([idx, new]))
    acc = np.mean([p.predict(x[i].tobytes(), True) == y[i] for i in others])
    print("class 9 from %d samples: recall %.3f (%d samples), all-class accuracy %.3f"
          % (len(new), recall, len(rest), acc))
    assert recall >= 0.80
    # a class id the model never had (max_classes above its 10 outputs)
    q = make(digits, max_classes=11)
    for i in idx:
        q.step(x[i].tobytes(), int(y[i]), quantized=True)
    for i in new:
        q.step(x[i].tobytes(), 10, quantized=True)
    assert np.mean([q.predict(x[i].tobytes(), True) == 10 for i in rest]) == recall


# ---------------------------------------------------------------------------
# MicroPython: parity and memory

MPY_SRC = r"""
import gc
import tinyadapt
from tinyadapt import adapt


def main():
    m = tinyadapt.Model.load('digits.tam')
    d = m.input_size
    data = open('digits.in', 'rb').read()
    lab = open('digits.lab', 'rb').read()
    n_step = N_STEP
    res = bytearray(len(lab) - n_step)
    gc.collect()
    a = gc.mem_alloc()
    p = adapt.Prototypes(m, layer=LAYER, max_classes=10)
    gc.collect()
    b = gc.mem_alloc()
    peak = b
    for i in range(n_step):
        p.step(data[i * d:(i + 1) * d], lab[i], True)
        gc.collect()
        z = gc.mem_alloc()
        if z > peak:
            peak = z
    gc.collect()
    c = gc.mem_alloc()
    for i in range(n_step, len(lab)):
        res[i - n_step] = p.predict(data[i * d:(i + 1) * d], True)
    print('MEM', a, b, c, peak, p.cost()['ram_bytes'], p.cost()['objects_bytes'])
    print('PRED', bytes(res).hex())
    print('STATE', p.state_bytes().hex())


main()
"""


def _board_dir(path, natmod):
    import build_lib
    pkg = path / "tinyadapt"
    pkg.mkdir(parents=True)
    for f in glob.glob(os.path.join(ROOT, "python_lib", "tinyadapt", "*.py")):
        name = os.path.basename(f)[:-3]
        subprocess.run(build_lib.mpy_cross() + ["-o", str(pkg / (name + ".mpy")), f], check=True)
    shutil.copy(natmod, path / "_tinyadapt.mpy")
    return path


def test_parity_and_memory_on_micropython(digits, micropython, natmod_x64, tmp_path):
    from tinyadapt_host.boards import load_board
    from tinyadapt_host.vboard import heapsize_for
    x, y = digits["drift"], digits["y"]
    idx = support(y)
    order = np.concatenate([idx, np.arange(300)])      # 50 steps, then 300 predictions
    cwd = _board_dir(tmp_path / "board", natmod_x64)
    shutil.copy(digits["path"], cwd / "digits.tam")
    (cwd / "digits.in").write_bytes(x[order].astype(np.int8).tobytes())
    (cwd / "digits.lab").write_bytes(bytes(int(v) for v in y[order]))
    code = MPY_SRC.replace("N_STEP", str(len(idx))).replace("LAYER", str(LAYER))
    proc = run_mpy(micropython, code, str(cwd),
                   heap=heapsize_for(load_board("rp2040").heap_bytes), timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout[-2000:]
    out = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    # CPython, the same steps
    p = make(digits)
    for i in idx:
        p.step(x[i].tobytes(), int(y[i]), quantized=True)
    pred = bytes(p.predict(x[i].tobytes(), True) for i in range(300))
    assert out["PRED"] == pred.hex()
    assert out["STATE"] == p.state_bytes().hex()
    a, b, c, peak, ram, objs = (int(v) for v in out["MEM"].split())
    print("MicroPython (rp2040 heap): adapter %d B after creation, %d B after %d steps, "
          "peak %d B; cost ram_bytes %d + objects_bytes %d"
          % (b - a, c - a, len(idx), peak - a, ram, objs))
    assert ram == p.cost()["ram_bytes"]
    for grown in (b - a, c - a, peak - a):
        assert ram <= grown <= ram + objs


# ---------------------------------------------------------------------------
# bad input


def test_bad_input(digits):
    from tinyadapt import adapt
    m = digits["model"]
    x = digits["drift"][0].tobytes()
    with pytest.raises(ValueError, match="layer 4: the model has 4 layers"):
        adapt.Prototypes(m, layer=4)
    with pytest.raises(ValueError, match="layer -5"):
        adapt.Prototypes(m, layer=-5)
    with pytest.raises(TypeError, match="layer: expected an int"):
        adapt.Prototypes(m, layer="fc1")
    with pytest.raises(ValueError, match="max_classes 0"):
        adapt.Prototypes(m, layer=1, max_classes=0)
    with pytest.raises(TypeError, match="model"):
        adapt.Prototypes(None)
    p = make(digits)
    with pytest.raises(ValueError, match="no class has samples"):
        p.predict(x, True)
    with pytest.raises(ValueError, match="label 10 out of range"):
        p.step(x, 10, quantized=True)
    with pytest.raises(ValueError, match="label -1 out of range"):
        p.step(x, -1, quantized=True)
    with pytest.raises(TypeError, match="label: expected an int"):
        p.step(x, 1.0, quantized=True)
    with pytest.raises(ValueError, match="63 values, the model takes 64"):
        p.step(x[:63], 1, quantized=True)
    with pytest.raises(TypeError, match="quantized=True takes an int8 buffer"):
        p.step([0] * 64, 1, quantized=True)
    with pytest.raises(TypeError):
        p.step(None, 1)
    assert p.state_bytes() == bytes(len(p.state_bytes()))     # nothing was added
    p.step(x, 3, quantized=True)
    assert p.predict(x, True) == 3
    p.step(x, 5, quantized=True)
    assert p.predict(x, True) == 3                       # equal means: the lowest index
    p.reset()
    assert p.state_bytes() == bytes(len(p.state_bytes()))
    with pytest.raises(ValueError, match="2 inputs but 1 labels"):
        p.evaluate([x, x], [1])
