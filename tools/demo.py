#!/usr/bin/env python3
"""`make demo`: a virtual RP2040 runs an int8 dense layer; the host simulator runs the
same layer; both outputs are shown and must be identical, byte for byte.

Steps: start a virtual rp2040 (the unix MicroPython with the Pico's heap, served on
127.0.0.1), deploy build/deploy/x64/lib with `mpremote cp`, run a script there with
`mpremote run`, run the same script on CPython with host_sim, compare.
"""
import os
import random
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "host_sim"), os.path.join(ROOT, "python_lib")]

from tinyadapt_host.vboard import VirtualBoard  # noqa: E402

N_IN, N_OUT, BATCH = 16, 8, 4


def quantize_multiplier(scale):
    """A positive real scale as TFLite's (int32 multiplier in [2^30, 2^31), shift)."""
    shift = 0
    while scale >= 1.0:
        scale /= 2.0
        shift += 1
    while scale < 0.5:
        scale *= 2.0
        shift -= 1
    mult = int(round(scale * (1 << 31)))
    if mult == 1 << 31:
        mult //= 2
        shift += 1
    return mult, shift


def layer_script():
    """A script that runs on both runtimes: the layer's numbers are literals in it."""
    rng = random.Random(2026)
    w = [rng.randint(-127, 127) for _ in range(N_IN * N_OUT)]
    x = [rng.randint(-128, 127) for _ in range(N_IN * BATCH)]
    bias = [rng.randint(-2000, 2000) for _ in range(N_OUT)]
    # real scales: input 0.05, weights 0.01..0.02 per channel, output 1.0
    qm = [quantize_multiplier(0.05 * (0.01 + 0.01 * o / N_OUT) / 1.0) for o in range(N_OUT)]
    return """import array, sys
import tinyadapt
w = bytes(array.array('b', %r))
x = bytes(array.array('b', %r))
layer = tinyadapt.Dense(w, array.array('i', %r), array.array('i', %r), array.array('i', %r),
                        %d, %d, in_zp=-3, out_zp=5, act_min=-128, act_max=127)
y = layer(x)
print('RUNTIME', sys.implementation.name, sys.platform)
print('OUT', ' '.join(str(v - 256 if v > 127 else v) for v in y))
print('HEX', bytes(y).hex())
""" % (w, x, bias, [m for m, _ in qm], [s for _, s in qm], N_IN, N_OUT)


def mpremote(url, *args, timeout=120):
    cmd = [sys.executable, "-m", "mpremote", "connect", url] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def field(out, key):
    for line in out.splitlines():
        if line.startswith(key + " "):
            return line[len(key) + 1:]
    return None


def main():
    lib = os.path.join(ROOT, "build", "deploy", "x64", "lib")
    if not os.path.exists(os.path.join(lib, "_tinyadapt.mpy")):
        print("demo: %s is missing: run `make demo` (it builds first)" % lib)
        return 2
    script = layer_script()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "dense_demo.py")
        with open(path, "w") as f:
            f.write(script)
        root = os.path.join(ROOT, "build", "vboard", "demo-rp2040")
        print("[1/4] starting a virtual rp2040 (unix MicroPython, Pico heap) ...", flush=True)
        with VirtualBoard("rp2040", root=root) as board:
            print("      %s, heap %d bytes, filesystem %s" % (board.url, board.heap_bytes, board.root))
            print("[2/4] deploying build/deploy/x64/lib with mpremote cp ...", flush=True)
            t = time.time()
            p = mpremote(board.url, "cp", "-r", lib, ":")
            if p.returncode:
                print(p.stdout, p.stderr)
                return 1
            print("      done in %.1f s" % (time.time() - t))
            print("[3/4] running a %dx%d int8 dense layer on the board (mpremote run) ..."
                  % (N_IN, N_OUT), flush=True)
            p = mpremote(board.url, "run", path)
            board_out = p.stdout
            if p.returncode or field(board_out, "HEX") is None:
                print(p.stdout, p.stderr)
                return 1
        print("[4/4] running the same script on CPython with host_sim ...", flush=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "host_sim"),
                                             os.path.join(ROOT, "python_lib")])
        p = subprocess.run([sys.executable, path], capture_output=True, text=True, env=env)
        host_out = p.stdout
        if p.returncode:
            print(p.stdout, p.stderr)
            return 1
    print()
    print("  board (%s): %s" % (field(board_out, "RUNTIME"), field(board_out, "OUT")))
    print("  host  (%s): %s" % (field(host_out, "RUNTIME"), field(host_out, "OUT")))
    same = field(board_out, "HEX") == field(host_out, "HEX")
    print()
    print("  outputs identical byte for byte: %s" % ("yes" if same else "NO"))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
