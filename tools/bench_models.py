#!/usr/bin/env python3
"""Benchmark of whole models: inference time per sample on the virtual board's
MicroPython, on CPython with host_sim, and on TFLite Micro, side by side in one run,
with the board's peak RAM measured against tinyadapt_host.plan's prediction.

Models (tinyadapt_host.demo_models: trained on the CPU in seconds, weights cached
under build/demo_models/):

* digits_mlp: the 64-32-10 MLP from PyTorch (convert_torch);
* fashion_cnn: the two-conv Fashion-MNIST CNN from PyTorch (needs Debian's
  dataset-fashion-mnist; skipped with a note when missing);
* digits_cnn_tflite: a CNN trained on digits, written as an int8 .tflite with
  tests/tflite_builder.py (tests/trained_models.py tflite_from_tam) and converted
  with convert_tflite, as any .tflite would be.

Each runs on N held-out samples, quantized once on the host (int8 input, the same
bytes everywhere):

1. board: a virtual rp2040 (the unix MicroPython with the Pico's heap, the x64
   natmod), deployed and driven with mpremote; `Model.predict(xq, True)` timed with
   time.ticks_us around each call; gc.mem_alloc() after gc.collect() before and
   after Model.load and after each predict;
2. host: tinyadapt.Model on CPython (host_sim's numpy kernels), timed with
   time.perf_counter around each predict;
3. TFLite Micro (reference kernels, its Python interpreter): the same model as
   .tflite (for the PyTorch models: their .tam written as .tflite with
   tests/tflite_builder.py), set_input + invoke + reading the class, per sample.

The predicted classes of the three must be identical (exit 1 otherwise). The
virtual board runs x64 code: its times are this machine's, not a Pico's; read the
ratios, measured in the same run on a possibly busy machine, rather than the
absolute numbers.

This tool imports tests/trained_models.py and tests/tflite_builder.py (the .tflite
writer of the test suite; the packages tflite, flatbuffers, tflite-micro of
requirements.txt); without them the TFLite Micro column and the .tflite model are
left out.

    python tools/bench_models.py [-n 200] [--models digits_mlp,fashion_cnn,digits_cnn_tflite]
"""
import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "host_sim"), os.path.join(ROOT, "python_lib"),
                os.path.join(ROOT, "tools"), os.path.join(ROOT, "tests")]

import numpy as np  # noqa: E402

MODELS = ("digits_mlp", "fashion_cnn", "digits_cnn_tflite")
HAVE_TFLITE = all(importlib.util.find_spec(m) is not None
                  for m in ("tflite", "flatbuffers", "tflite_micro"))

BOARD_SRC = r"""
import gc, time
gc.collect()
fresh = gc.mem_alloc()
import tinyadapt
from tinyadapt import Model
gc.collect()
lib = gc.mem_alloc()


def main(name, size, count):
    xq = bytearray(size)
    cls = bytearray(count)
    f = open(name + '.in', 'rb')
    gc.collect()
    before = gc.mem_alloc()
    m = Model.load(name + '.tam')
    gc.collect()
    loaded = gc.mem_alloc()
    peak = loaded
    ticks_us = time.ticks_us
    ticks_diff = time.ticks_diff
    f.readinto(xq)
    m.predict(xq, True)          # warm-up
    f.seek(0)
    total = 0
    best = 1 << 30
    for i in range(count):
        f.readinto(xq)
        t0 = ticks_us()
        c = m.predict(xq, True)
        dt = ticks_diff(ticks_us(), t0)
        a = gc.mem_alloc()       # nothing in this loop allocates: no collection needed
        if a > peak:
            peak = a
        total += dt
        if dt < best:
            best = dt
        cls[i] = c
    f.close()
    print('RES', fresh, lib, before, loaded, peak, total, best, len(m.buf), m.arena_bytes)
    print('CLS', bytes(cls).hex())


main(%r, %d, %d)
"""


def mpremote(url, *args, timeout=600):
    cmd = [sys.executable, "-m", "mpremote", "connect", url] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def prepare(name, n, workdir):
    """(tam path, int8 inputs (n, size), labels, .tflite bytes or None)."""
    from tinyadapt_host import convert_tflite
    from tinyadapt_host import demo_models as dm
    train = {"digits_mlp": dm.train_digits_mlp, "fashion_cnn": dm.train_fashion_cnn,
             "digits_cnn_tflite": dm.train_digits_cnn}[name]
    module, calib, (xte, yte) = train()
    path = os.path.join(workdir, name + ".tam")
    conv = dm.convert(module, calib, None if name == "digits_cnn_tflite" else path)
    tfl = None
    if HAVE_TFLITE:
        import trained_models
        tfl = trained_models.tflite_from_tam(conv.model)
    if name == "digits_cnn_tflite":
        with open(path, "wb") as f:
            f.write(convert_tflite.convert_bytes(tfl, source=name + ".tflite"))
    xq = dm.quantize_inputs(conv, xte[:n])
    return path, xq, yte[:n], tfl


def run_board(url, name, path, xq, workdir):
    inp = os.path.join(workdir, name + ".in")
    with open(inp, "wb") as f:
        f.write(xq.tobytes())
    p = mpremote(url, "cp", path, inp, ":")
    if p.returncode:
        raise SystemExit("mpremote cp failed: " + p.stderr)
    script = os.path.join(workdir, name + "_bench.py")
    with open(script, "w") as f:
        f.write(BOARD_SRC % (name, xq.shape[1], len(xq)))
    p = mpremote(url, "run", script)
    if p.returncode:
        raise SystemExit("board run failed:\n" + p.stdout[-800:] + p.stderr)
    res = {}
    for line in p.stdout.replace("\r\n", "\n").splitlines():
        f = line.split()
        if f and f[0] in ("RES", "CLS"):
            res[f[0]] = f[1:]
    fresh, lib, before, loaded, peak, total, best, size, arena = (int(v) for v in res["RES"])
    classes = np.frombuffer(bytes.fromhex(res["CLS"][0]), np.uint8).astype(np.int64)
    return {"us": total / len(xq), "best_us": best, "classes": classes, "fresh": fresh,
            "import": lib - fresh, "load": loaded - before, "peak_over": peak - loaded,
            "file": size, "arena": arena}


def run_host(path, xq):
    import tinyadapt
    m = tinyadapt.Model.load(path)
    rows = [r.tobytes() for r in xq]
    m.predict(rows[0], quantized=True)
    classes, total = [], 0.0
    for q in rows:
        t0 = time.perf_counter()
        c = m.predict(q, quantized=True)
        total += time.perf_counter() - t0
        classes.append(c)
    return {"us": total / len(rows) * 1e6, "classes": np.array(classes)}


def run_tflm(tfl, xq):
    import trained_models
    r = trained_models.TflmRunner(tfl)
    interp, shape = r.interp, r.input_shape
    rows = [np.ascontiguousarray(x).reshape(shape) for x in xq]
    r.run(rows[0])
    classes, total = [], 0.0
    for x in rows:
        t0 = time.perf_counter()
        interp.set_input(x, 0)
        interp.invoke()
        c = int(interp.get_output(1).reshape(-1)[0])
        total += time.perf_counter() - t0
        classes.append(c)
    return {"us": total / len(rows) * 1e6, "classes": np.array(classes)}


def macs(path):
    """Multiply-accumulates of one inference (conv, depthwise, fully connected)."""
    from tinyadapt_host import tam
    m = tam.load(path)
    T = dict((t.id, t) for t in m.tensors)
    n = 0
    for l in m.layers:
        out = T[l.output]
        if l.op == "fully_connected":
            n_out, n_in = T[l.weights].shape
            n += n_out * n_in * (int(np.prod(out.shape)) // n_out)
        elif l.op == "conv2d":
            w = T[l.weights].shape
            n += int(np.prod(out.shape)) * w[1] * w[2] * w[3]
        elif l.op == "depthwise_conv2d":
            w = T[l.weights].shape
            n += int(np.prod(out.shape)) * w[1] * w[2]
    return n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200, help="samples per model (default 200)")
    ap.add_argument("--models", default=",".join(MODELS),
                    help="comma-separated subset of %s" % ", ".join(MODELS))
    args = ap.parse_args(argv)
    names = [m for m in args.models.split(",") if m]
    for m in names:
        if m not in MODELS:
            ap.error("unknown model %r (known: %s)" % (m, ", ".join(MODELS)))

    import build_lib
    import build_natmod
    from tinyadapt_host import datasets, plan
    from tinyadapt_host.vboard import VirtualBoard
    try:
        import torch  # noqa: F401
    except ImportError:
        print("bench_models: torch is missing (pip install -r requirements.txt)")
        return 1
    src = sorted(os.path.join(ROOT, "natmod", f) for f in os.listdir(os.path.join(ROOT, "natmod"))
                 if f.endswith(".c"))
    build_natmod.build("x64", src, os.path.join(ROOT, "build", "natmod", "x64", "_tinyadapt.mpy"))
    lib = build_lib.build("x64")

    rows, notes, same = [], [], True
    with tempfile.TemporaryDirectory(prefix="bench_models_") as work:
        vb = VirtualBoard("rp2040", root=os.path.join(work, "board")).start()
        try:
            p = mpremote(vb.url, "cp", "-r", lib, ":")
            if p.returncode:
                raise SystemExit("deploy failed: " + p.stderr)
            for name in names:
                if name == "digits_cnn_tflite" and not HAVE_TFLITE:
                    notes.append("%s: left out (tflite, flatbuffers, tflite-micro missing)" % name)
                    continue
                try:
                    path, xq, y, tfl = prepare(name, args.n, work)
                except datasets.DatasetMissing as e:
                    notes.append("%s: left out (%s)" % (name, e))
                    continue
                b = run_board(vb.url, name, path, xq, work)
                h = run_host(path, xq)
                t = run_tflm(tfl, xq) if tfl is not None else None
                ok = (np.array_equal(b["classes"], h["classes"])
                      and (t is None or np.array_equal(b["classes"], t["classes"])))
                same = same and ok
                rows.append((name, path, len(xq), b, h, t, ok,
                             float((b["classes"] == y).mean()), plan.plan_file(path, word=8)))
        finally:
            vb.stop()

        print("Inference per sample, int8 input (predict), %d samples per model, one run" % args.n)
        print("board = virtual rp2040: unix MicroPython (x64 natmod) with the Pico's heap, "
              "timed on the board with time.ticks_us")
        print("%-18s %8s %11s %11s %11s %10s %10s %8s %s" % (
            "model", "MACs", "board us", "host us", "TFLM us", "host/board", "TFLM/board",
            "accuracy", "same classes"))
        for name, path, n, b, h, t, ok, acc, p in rows:
            print("%-18s %8d %11.1f %11.1f %11s %10.2f %10s %7.1f%% %s" % (
                name, macs(path), b["us"], h["us"], "%.1f" % t["us"] if t else "n/a",
                h["us"] / b["us"], "%.2f" % (t["us"] / b["us"]) if t else "n/a", 100 * acc,
                "yes" if ok else "NO"))
        print()
        print("RAM on the board (bytes; plan.py with word 8, the unix port's):")
        print("%-18s %18s %18s %12s %22s %16s" % (
            "model", "load plan/meas", "import plan/meas", "call growth",
            "tinyadapt peak plan/meas", "plan peak (info)"))
        for name, path, n, b, h, t, ok, acc, p in rows:
            ours = b["import"] + b["load"] + b["peak_over"]
            ours_plan = plan.LIBRARY_64 + p.model_bytes + p.transient_bytes
            print("%-18s %8d/%-9d %8d/%-9d %12d %11d/%-10d %16d" % (
                name, p.model_bytes, b["load"], plan.LIBRARY_64, b["import"], b["peak_over"],
                ours_plan, ours, p.peak_bytes))
        print("  load = file + arena + objects; tinyadapt peak = import + load + what predict "
              "holds; plan peak adds a fresh interpreter (%d) and the fragmentation reserve (%d)"
              % (plan.FRESH_64, plan.FRAGMENTATION_BYTES[8]))
        if rows:
            print("  the virtual board's own interpreter and agent hold %d B before the script "
                  "starts" % rows[0][3]["fresh"])
        for line in notes:
            print("note: " + line)
        print("predicted classes identical on board, host%s: %s" % (
            " and TFLite Micro" if HAVE_TFLITE else "", "yes" if same else "NO"))
    return 0 if same and rows else 1


if __name__ == "__main__":
    sys.exit(main())
