"""Trained, converted models on MicroPython on the virtual rp2040, against host_sim
on CPython and TFLite Micro, with the board's RAM measured against plan.py.

Models (tinyadapt_host.demo_models; weights cached under build/demo_models/):

* digits_mlp: the 64-32-10 MLP from PyTorch (convert_torch), on the 500
  held-out digits;
* fashion_cnn: the two-conv Fashion-MNIST CNN from PyTorch, on the first 300
  test images (Debian's dataset-fashion-mnist: skipped locally when missing,
  a failure in CI);
* digits_cnn_tflite: a .tflite CNN classifier (conv -> depthwise -> max pool ->
  reshape -> fully connected -> softmax, plus ARG_MAX), written with
  tests/tflite_builder.py from a CNN trained on digits (tests/trained_models.py
  tflite_from_tam) and converted back with convert_tflite, on the 500 held-out
  digits: the board's predictions, logits and probabilities equal TFLite
  Micro's (`run_tflm`'s interpreter, reference kernels) byte for byte.

Each model: the host quantizes the samples once (int8, .tam layout) and writes
them to a binary file; `mpremote cp` puts the .tam and that file on the board,
`mpremote run` runs a script that reads one sample at a time into a bytearray
and prints the class and the logits (hex) of each. The same int8 inputs go
through tinyadapt.Model on CPython (host_sim's numpy kernels): predictions
identical sample for sample, logits bytes identical.

RAM, on the board (64-bit unix port, rp2040 heap of 233024 B): `gc.collect();
gc.mem_alloc()` at the start, after `import tinyadapt`, before Model.load (the
script's input and result buffers already allocated), after it, and after
each predict and each logits call (a collection before each sample; results
go to a preallocated bytearray, printed after the loop, so nothing else
allocates there). Asserted against tinyadapt_host.plan (word 8) with the
margins of tests/test_model.py test_memory_measured_vs_plan: the load grows the
heap by file + arena + objects within 512 B + 5 % of the objects estimate;
`import tinyadapt` within LIBRARY_64 - 4 KB .. + 1 KB; predict allocates 0 B;
a logits call and the peak during predictions stay within TRANSIENT_BYTES of
the loaded model; so what tinyadapt holds at the peak (import + model + a call)
is plan's LIBRARY_64 + model + transient within those margins. plan's peak
adds a 1 KB fresh interpreter and the fragmentation reserve; the virtual
board's interpreter and agent hold about 9.6 KB before a script starts (printed,
not asserted). The numbers are printed (pytest -s).
"""
import importlib.util
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import NATMOD_SRC, ROOT, require

HAVE_TORCH = importlib.util.find_spec("torch") is not None
_TFLITE = ("tflite", "flatbuffers", "tflite_micro")
MISSING_TFLITE = [m for m in _TFLITE if importlib.util.find_spec(m) is None]

N_SAMPLES = {"digits_mlp": 500, "fashion_cnn": 300, "digits_cnn_tflite": 500}
CHUNK = 500                     # samples per `mpremote run`
OBJ_MARGIN = (512, 0.05)        # test_model.py: objects within 512 B + 5 %
LIB_MARGIN = (4096, 1024)       # test_model.py: import tinyadapt within -4 KB / +1 KB

BOARD_SRC = r"""
import gc
gc.collect()
fresh = gc.mem_alloc()
import tinyadapt
from tinyadapt import Model
gc.collect()
lib = gc.mem_alloc()


def main(name, size, start, count, n_cls, probs_layer):
    # in a function: locals never allocate. The caller's buffers come before the
    # model: the input, and the results (class, logits, probabilities per sample),
    # printed after the loop so that nothing but the model's calls allocates in it
    xq = bytearray(size)
    rec = 1 + 2 * n_cls
    res = bytearray(count * rec)
    f = open(name + '.in', 'rb')
    f.seek(start * size)
    gc.collect()
    before = gc.mem_alloc()
    m = Model.load(name + '.tam')
    gc.collect()
    loaded = gc.mem_alloc()
    peak = loaded
    pred_alloc = 0
    call = 0
    for i in range(count):
        f.readinto(xq)
        gc.collect()
        z = gc.mem_alloc()
        c = m.predict(xq, True)
        a = gc.mem_alloc()
        lg = m.logits(xq, True)
        b = gc.mem_alloc()
        if a - z > pred_alloc:
            pred_alloc = a - z
        if b - z > call:
            call = b - z
        if a > peak:
            peak = a
        if b > peak:
            peak = b
        o = i * rec
        res[o] = c
        res[o + 1:o + 1 + n_cls] = lg
        if probs_layer is not None:
            res[o + 1 + n_cls:o + rec] = m.features(xq, probs_layer, True)
        lg = None
    f.close()
    print('MEM', fresh, lib, before, loaded, peak, pred_alloc, call, len(m.buf), m.arena_bytes,
          m.ram_report(8)['objects'])
    for i in range(count):
        print('S', bytes(res[i * rec:(i + 1) * rec]).hex())


main(%r, %d, %d, %d, %d, %r)
"""


def mpremote(url, *args, timeout=180):
    cmd = [sys.executable, "-m", "mpremote", "connect", url] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """(url, root) of a virtual rp2040 with build/deploy/x64/lib deployed."""
    import build_lib
    import build_natmod
    from tinyadapt_host.vboard import VirtualBoard
    root = tmp_path_factory.mktemp("rp2040")
    build_natmod.build("x64", NATMOD_SRC, os.path.join(ROOT, "build", "natmod", "x64",
                                                       "_tinyadapt.mpy"))
    lib = build_lib.build("x64")
    vb = VirtualBoard("rp2040", root=root).start()
    try:
        p = mpremote(vb.url, "cp", "-r", lib, ":")
        assert p.returncode == 0, p.stderr
        yield vb.url, root
    finally:
        vb.stop()


# ------------------------------------------------------------------ the models


def _torch_model(train_fn, path):
    from tinyadapt_host import demo_models as dm
    module, calib, (xte, yte) = train_fn()
    conv = dm.convert(module, calib, path)
    import torch
    with torch.no_grad():
        float_pred = module(torch.from_numpy(xte)).numpy().argmax(1)
    return conv, xte, yte, float_pred


def prepare(name, tmp_path):
    """{"tam": path, "xq": int8 (n, size), "y": labels, "float_pred", "tflite"
    (bytes or None), "probs_layer" (index or None)} for one model."""
    require(HAVE_TORCH, "torch", "pip install -r requirements.txt (torch==2.13.0, CPU)")
    from tinyadapt_host import datasets
    from tinyadapt_host import demo_models as dm
    n = N_SAMPLES[name]
    tam_path = str(tmp_path / (name + ".tam"))
    r = {"tam": tam_path, "tflite": None, "probs_layer": None}
    if name == "digits_mlp":
        conv, xte, yte, fp = _torch_model(dm.train_digits_mlp, tam_path)
    elif name == "fashion_cnn":
        try:
            conv, xte, yte, fp = _torch_model(dm.train_fashion_cnn, tam_path)
        except datasets.DatasetMissing as e:
            require(False, "Fashion-MNIST", str(e))
    else:
        require(not MISSING_TFLITE, "Python packages %s" % ", ".join(MISSING_TFLITE),
                "pip install -r requirements.txt")
        import trained_models
        from tinyadapt_host import convert_tflite, tam
        conv, xte, yte, fp = _torch_model(dm.train_digits_cnn, None)
        r["tflite"] = trained_models.tflite_from_tam(conv.model)
        image = convert_tflite.convert_bytes(r["tflite"], source="digits_cnn.tflite")
        with open(tam_path, "wb") as f:
            f.write(image)
        ops = [l.op for l in tam.from_bytes(image).layers]
        assert ops == ["conv2d", "depthwise_conv2d", "max_pool", "reshape", "fully_connected",
                       "softmax", "argmax"], ops
        r["probs_layer"] = ops.index("softmax")
    xq = dm.quantize_inputs(conv, xte[:n])
    r.update(xq=xq, y=yte[:n], float_pred=fp[:n], n_cls=10)
    return r


def run_on_board(url, r, name, tmp_path):
    """Copy the model and its int8 inputs, run the script in chunks; returns
    (list of (class, logits bytes, probs bytes or None), MEM fields of chunk 0)."""
    xq = r["xq"]
    size = xq.shape[1]
    inp = tmp_path / (name + ".in")
    inp.write_bytes(xq.tobytes())
    p = mpremote(url, "cp", r["tam"], str(inp), ":")
    assert p.returncode == 0, p.stderr
    results, mems = [], []
    for start in range(0, len(xq), CHUNK):
        count = min(CHUNK, len(xq) - start)
        script = tmp_path / ("%s_%d.py" % (name, start))
        script.write_text(BOARD_SRC % (name, size, start, count, r["n_cls"], r["probs_layer"]))
        p = mpremote(url, "run", str(script))
        assert p.returncode == 0, p.stdout[-800:] + p.stderr
        for line in p.stdout.replace("\r\n", "\n").splitlines():
            f = line.split()
            if f and f[0] == "S":
                b, k = bytes.fromhex(f[1]), r["n_cls"]
                results.append((b[0], b[1:1 + k], b[1 + k:] if r["probs_layer"] is not None
                                else None))
            elif f and f[0] == "MEM":
                mems.append([int(v) for v in f[1:]])
        assert len(mems) == 1 + start // CHUNK, p.stdout[-800:]
    assert len(results) == len(xq)
    return results, mems[0]


def run_on_host(r):
    """The same int8 inputs through tinyadapt.Model on CPython (host_sim kernels)."""
    import tinyadapt
    m = tinyadapt.Model.load(r["tam"])
    out = []
    for row in r["xq"]:
        q = row.tobytes()
        probs = None
        if r["probs_layer"] is not None:
            probs = m.features(q, r["probs_layer"], quantized=True)
        out.append((m.predict(q, quantized=True), m.logits(q, quantized=True), probs))
    return out


def check_memory(name, r, mem):
    """Assert the board's measurements against plan.py (word 8); print them."""
    from tinyadapt_host import plan
    fresh, lib, before, loaded, peak, pred_alloc, call, size, arena, objs = mem
    p = plan.plan_file(r["tam"], word=8)
    assert (size, arena, objs) == (p.file_bytes, p.arena_bytes, p.object_bytes)
    load = loaded - before
    margin = OBJ_MARGIN[0] + OBJ_MARGIN[1] * p.object_bytes
    # what tinyadapt holds at the peak: the import, the loaded model, a call's copies;
    # the plan's counterpart is its peak without the fresh interpreter and the reserve
    ours = (lib - fresh) + (peak - before)
    ours_plan = plan.LIBRARY_64 + p.model_bytes + p.transient_bytes
    lines = [
        "%s RAM on the virtual rp2040 (64-bit port, heap 233024), bytes:" % name,
        "  fresh interpreter   measured %6d (virtual board agent + this script); plan "
        "FRESH_64 %d" % (fresh, plan.FRESH_64),
        "  import tinyadapt    measured %6d, plan %6d" % (lib - fresh, plan.LIBRARY_64),
        "  Model.load          measured %6d, plan %6d = file %d + arena %d + objects %d"
        % (load, p.model_bytes, p.file_bytes, p.arena_bytes, p.object_bytes),
        "  predict             %d B per call; logits copy %d B; peak %d B above the loaded "
        "model (plan transient %d)" % (pred_alloc, call, peak - loaded, p.transient_bytes),
        "  tinyadapt at peak   measured %6d, plan %6d (import + model + transient)"
        % (ours, ours_plan),
        "  heap in use at peak measured %6d (all of it: interpreter, agent, script buffers); "
        "plan peak %d (incl. fresh %d and fragmentation reserve %d)"
        % (peak, p.peak_bytes, plan.FRESH_64, p.fragmentation_bytes),
    ]
    print("\n".join(lines))
    assert abs(load - p.model_bytes) <= margin, lines
    assert plan.LIBRARY_64 - LIB_MARGIN[0] <= lib - fresh <= plan.LIBRARY_64 + LIB_MARGIN[1], lines
    assert pred_alloc == 0, lines
    assert 0 <= call <= p.transient_bytes and 0 <= peak - loaded <= p.transient_bytes, lines
    assert -LIB_MARGIN[0] - margin <= ours - ours_plan <= LIB_MARGIN[1] + margin, lines
    return p


@pytest.mark.parametrize("name", ["digits_mlp", "fashion_cnn", "digits_cnn_tflite"])
def test_model_on_board_matches_host(board, name, tmp_path):
    url, _ = board
    t0 = time.time()
    r = prepare(name, tmp_path)
    t1 = time.time()
    got, mem = run_on_board(url, r, name, tmp_path)
    t2 = time.time()
    want = run_on_host(r)
    n = len(want)
    diff = [i for i in range(n) if got[i] != want[i]]
    assert not diff, "%s: %d of %d samples differ, first %d: board %r, host %r" % (
        name, len(diff), n, diff[0], got[diff[0]], want[diff[0]])
    board_pred = np.array([g[0] for g in got])
    assert all(g[0] == int(np.argmax(np.frombuffer(g[1], np.int8))) for g in got)
    acc = float((board_pred == r["y"]).mean())
    facc = float((r["float_pred"] == r["y"]).mean())
    print("\n%s: %d samples, board == host on every prediction and logits byte; accuracy "
          "board %.2f%%, host %.2f%%, float PyTorch %.2f%% (prepare %.1f s, board %.1f s)"
          % (name, n, 100 * acc, 100 * float((np.array([w[0] for w in want]) == r["y"]).mean()),
             100 * facc, t1 - t0, t2 - t1))
    assert acc >= facc - 0.02
    check_memory(name, r, mem)
    if r["tflite"] is not None:
        import trained_models
        import tflite_builder
        tflm = trained_models.TflmRunner(r["tflite"])
        for row in r["xq"][:3]:     # the runner (one interpreter) is run_tflm (one per call)
            a = tflm.run(row)
            b = tflite_builder.run_tflm(r["tflite"], row.reshape(tflm.input_shape))
            assert all(x.tobytes() == y.tobytes() for x, y in zip(a, b))
        bad = []
        for i, row in enumerate(r["xq"]):
            probs, cls, logits = tflm.run(row)
            if (got[i][0], got[i][1], got[i][2]) != (int(cls.reshape(-1)[0]), logits.tobytes(),
                                                     probs.tobytes()):
                bad.append(i)
        assert not bad, "%s: %d of %d samples differ from TFLite Micro, first %d" % (
            name, len(bad), n, bad[0])
        print("%s: board == TFLite Micro (class, logits, probabilities) on all %d samples"
              % (name, n))


def test_torch_models_equal_tflite_micro(tmp_path):
    """The PyTorch models' .tam files, written as .tflite (tflite_from_tam), give
    TFLite Micro's logits and classes on CPython's tinyadapt.Model, which the test
    above holds equal to the board's."""
    require(not MISSING_TFLITE, "Python packages %s" % ", ".join(MISSING_TFLITE),
            "pip install -r requirements.txt")
    import tinyadapt
    import trained_models
    from tinyadapt_host import tam as htam
    for name in ("digits_mlp", "fashion_cnn"):
        r = prepare(name, tmp_path)
        tflm = trained_models.TflmRunner(trained_models.tflite_from_tam(htam.load(r["tam"])))
        m = tinyadapt.Model.load(r["tam"])
        for row in r["xq"][:100]:
            probs, cls, logits = tflm.run(row)
            q = row.tobytes()
            assert m.logits(q, quantized=True) == logits.tobytes(), name
            assert m.predict(q, quantized=True) == int(cls.reshape(-1)[0]), name
