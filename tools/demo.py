#!/usr/bin/env python3
"""`make demo`: train (or load cached) small models, convert them to int8 .tam, deploy
them to a virtual Raspberry Pi Pico, classify held-out data there and on the host
simulator, and show accuracy, peak RAM (predicted and measured) and time per sample.

The board is the unix MicroPython with the RP2040's heap, served on 127.0.0.1 and
driven with mpremote exactly as a real Pico on /dev/ttyACM0 would be. Its predictions
must equal the host's sample for sample (the kernels are bit-exact); the demo exits
non-zero if they do not.
"""
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "host_sim"), os.path.join(ROOT, "python_lib")]

N_SAMPLES = 300

BOARD_SCRIPT = """
import gc, time
gc.collect()
base = gc.mem_alloc()
import tinyadapt
m = tinyadapt.Model.load(%(model)r)
gc.collect()
loaded = gc.mem_alloc()
n, size = %(n)d, m.input_size
labels = open(%(labels)r, 'rb').read()
f = open(%(inputs)r, 'rb')
x = bytearray(size)
preds = bytearray(n)
peak = loaded
t = 0
for i in range(n):
    f.readinto(x)
    t0 = time.ticks_us()
    p = m.predict(x, quantized=True)
    t += time.ticks_diff(time.ticks_us(), t0)
    preds[i] = p
    a = gc.mem_alloc()
    if a > peak:
        peak = a
f.close()
correct = sum(1 for i in range(n) if preds[i] == labels[i])
print('ACC', correct, n)
print('RAM', loaded - base, peak - base)
print('US', t / n)
print('PRED', bytes(preds).hex())
"""


def mpremote(url, *args):
    cmd = [sys.executable, "-m", "mpremote", "connect", url] + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode:
        raise SystemExit("demo: mpremote %s failed:\n%s%s" % (" ".join(args), p.stdout, p.stderr))
    return p.stdout


def fields(out):
    res = {}
    for line in out.replace("\r\n", "\n").splitlines():
        key, _, rest = line.partition(" ")
        res[key] = rest
    return res


def build_models(workdir):
    """[(name, .tam path, int8 inputs, labels)], training or loading cached weights."""
    from tinyadapt_host import datasets
    from tinyadapt_host import demo_models as dm
    out = []
    todo = [("digits MLP (64-32-10)", dm.train_digits_mlp, "digits_mlp")]
    try:
        datasets.load_fashion_mnist("test")
        todo.append(("Fashion-MNIST CNN (2 conv)", dm.train_fashion_cnn, "fashion_cnn"))
    except datasets.DatasetMissing as e:
        print("      (Fashion-MNIST CNN left out: %s)" % e)
    for title, train, stem in todo:
        t = time.time()
        module, calib, (x_test, y_test) = train()
        path = os.path.join(workdir, stem + ".tam")
        conv = dm.convert(module, calib, path)
        xq = dm.quantize_inputs(conv, x_test[:N_SAMPLES])
        print("      %-28s trained/loaded and converted in %.1f s (%d bytes)"
              % (title, time.time() - t, os.path.getsize(path)))
        out.append((title, path, xq, bytes(int(v) for v in y_test[:N_SAMPLES])))
    return out


def run_host(path, xq, labels):
    import tinyadapt
    m = tinyadapt.Model.load(path)
    preds = bytearray(len(xq))
    t0 = time.perf_counter()
    for i in range(len(xq)):
        preds[i] = m.predict(xq[i].tobytes(), quantized=True)
    us = (time.perf_counter() - t0) / len(xq) * 1e6
    correct = sum(1 for p, y in zip(preds, labels) if p == y)
    return correct, bytes(preds), us


def main():
    from tinyadapt_host import plan
    from tinyadapt_host.boards import load_board
    from tinyadapt_host.vboard import VirtualBoard
    lib = os.path.join(ROOT, "build", "deploy", "x64", "lib")
    if not os.path.exists(os.path.join(lib, "_tinyadapt.mpy")):
        print("demo: %s is missing: run `make demo` (it builds first)" % lib)
        return 2
    heap = load_board("rp2040").heap_bytes
    with tempfile.TemporaryDirectory() as work:
        print("[1/4] models: train or load cached weights, convert to int8 .tam ...", flush=True)
        models = build_models(work)
        print("[2/4] starting a virtual rp2040 (unix MicroPython, %d-byte heap) ..." % heap, flush=True)
        root = os.path.join(ROOT, "build", "vboard", "demo-rp2040")
        rows = []
        ok = True
        with VirtualBoard("rp2040", root=root) as board:
            print("      %s, filesystem %s" % (board.url, board.root))
            print("[3/4] deploying the library and the models with mpremote cp ...", flush=True)
            mpremote(board.url, "cp", "-r", lib, ":")
            for title, path, xq, labels in models:
                stem = os.path.splitext(os.path.basename(path))[0]
                inputs = os.path.join(work, stem + ".x")
                with open(inputs, "wb") as f:
                    f.write(xq.tobytes())
                lab = os.path.join(work, stem + ".y")
                with open(lab, "wb") as f:
                    f.write(labels)
                for p in (path, inputs, lab):
                    mpremote(board.url, "cp", p, ":" + os.path.basename(p))
                print("[4/4] classifying %d held-out samples with %s on the board and the host ..."
                      % (len(labels), title), flush=True)
                script = os.path.join(work, stem + "_run.py")
                with open(script, "w") as f:
                    f.write(BOARD_SCRIPT % {"model": os.path.basename(path), "n": len(labels),
                                            "inputs": os.path.basename(inputs),
                                            "labels": os.path.basename(lab)})
                b = fields(mpremote(board.url, "run", script))
                h_correct, h_preds, h_us = run_host(path, xq, labels)
                b_correct = int(b["ACC"].split()[0])
                same = b["PRED"] == h_preds.hex()
                ok = ok and same
                after_load, peak = (int(v) for v in b["RAM"].split())
                predicted = plan.plan_file(path, word=8)
                rows.append((title, b_correct, h_correct, len(labels), same, after_load, peak,
                             predicted, float(b["US"]), h_us))
    print()
    for (title, bc, hc, n, same, after_load, peak, p, b_us, h_us) in rows:
        print("  %s" % title)
        print("    accuracy      board %5.1f%%   host %5.1f%%   predictions identical: %s"
              % (100.0 * bc / n, 100.0 * hc / n, "yes" if same else "NO"))
        print("    RAM measured  library + model loaded %d B, peak while classifying %d B"
              % (after_load, peak))
        print("    RAM predicted library + model %d B (file %d, arena %d, objects %d), peak %d B"
              " with reserves; rp2040 heap %d B: %s"
              % (p.library_bytes + p.model_bytes, p.file_bytes, p.arena_bytes, p.object_bytes,
                 p.peak_bytes, heap, "fits" if p.spare(heap) >= 0 else "does not fit"))
        print("    time/sample   board %.0f us (natmod, x64 MicroPython)   host %.0f us (numpy)"
              % (b_us, h_us))
    print()
    print("  board and host agree on every prediction: %s" % ("yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
