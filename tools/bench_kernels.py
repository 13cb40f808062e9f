#!/usr/bin/env python3
"""Benchmark of the first kernel: int8 fully-connected, measured side by side in one run.

The same layer (N_IN x N_OUT, batch 1, per-channel requantization) runs as
1. the natmod in the unix MicroPython (`_tinyadapt.fully_connected`),
2. the same integer algorithm in pure MicroPython (what a user without tinyadapt writes),
3. host_sim's numpy on CPython.
Prints microseconds per call and ratios. Timings on a shared machine are noisy: read
the ratios, measured in the same run, not the absolute numbers.
"""
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "host_sim"), os.path.join(ROOT, "tools")]

N_IN, N_OUT, REPS = 64, 32, 200

MP_SCRIPT = """
import time, array, _tinyadapt
N_IN, N_OUT, REPS = %d, %d, %d
w = bytes((i * 37 + 11) & 255 for i in range(N_IN * N_OUT))
x = bytes((i * 53 + 7) & 255 for i in range(N_IN))
bias = array.array('i', [i * 100 - 1000 for i in range(N_OUT)])
mult = array.array('i', [1500000000] * N_OUT)
shift = array.array('i', [-8] * N_OUT)
out = bytearray(N_OUT)

def srdhm(a, b):
    if a == b == -2147483648:
        return 2147483647
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else (1 - (1 << 30))
    q = ab + nudge
    return -((-q) >> 31) if q < 0 else q >> 31

def rshift(x, n):
    mask = (1 << n) - 1
    rem = x & mask
    th = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> n) + (1 if rem > th else 0)

def fc_python(out, x, w, bias, mult, shift):
    for o in range(N_OUT):
        acc = bias[o]
        base = o * N_IN
        for i in range(N_IN):
            xi = x[i] - 256 if x[i] > 127 else x[i]
            wi = w[base + i] - 256 if w[base + i] > 127 else w[base + i]
            acc += xi * wi
        s = shift[o]
        v = rshift(srdhm(acc << (s if s > 0 else 0), mult[o]), -s if s < 0 else 0)
        v = max(-128, min(127, v))
        out[o] = v & 255

t0 = time.ticks_us()
for _ in range(REPS):
    _tinyadapt.fully_connected(out, x, w, bias, mult, shift, N_IN, N_OUT, 0, 0, -128, 127)
t1 = time.ticks_us()
ref = bytes(out)
py_reps = max(1, REPS // 20)
for _ in range(py_reps):
    fc_python(out, x, w, bias, mult, shift)
t2 = time.ticks_us()
print('NATMOD_US', time.ticks_diff(t1, t0) / REPS)
print('PY_US', time.ticks_diff(t2, t1) / py_reps)
print('SAME', bytes(out) == ref)
print('OUT', ref.hex())
"""


def main():
    import build_natmod
    from tinyadapt_host.vboard import find_micropython
    src = sorted(os.path.join(ROOT, "natmod", f) for f in os.listdir(os.path.join(ROOT, "natmod"))
                 if f.endswith(".c"))
    mod = build_natmod.build("x64", src, os.path.join(ROOT, "build", "natmod", "x64", "_tinyadapt.mpy"))
    script = os.path.join(os.path.dirname(mod), "bench_fc.py")
    with open(script, "w") as f:
        f.write(MP_SCRIPT % (N_IN, N_OUT, REPS))
    p = subprocess.run(find_micropython() + [script], cwd=os.path.dirname(mod),
                       capture_output=True, text=True, timeout=600)
    if p.returncode:
        print(p.stdout, p.stderr)
        return 1
    res = dict(line.split(" ", 1) for line in p.stdout.splitlines())

    import array
    import _tinyadapt as host
    w = bytes((i * 37 + 11) & 255 for i in range(N_IN * N_OUT))
    x = bytes((i * 53 + 7) & 255 for i in range(N_IN))
    bias = array.array("i", [i * 100 - 1000 for i in range(N_OUT)])
    mult = array.array("i", [1500000000] * N_OUT)
    shift = array.array("i", [-8] * N_OUT)
    out = bytearray(N_OUT)
    t0 = time.perf_counter()
    for _ in range(REPS):
        host.fully_connected(out, x, w, bias, mult, shift, N_IN, N_OUT, 0, 0, -128, 127)
    np_us = (time.perf_counter() - t0) / REPS * 1e6
    nat, py = float(res["NATMOD_US"]), float(res["PY_US"])
    print("fully_connected %dx%d, batch 1, %d MACs" % (N_IN, N_OUT, N_IN * N_OUT))
    print("  %-38s %10.1f us/call" % ("natmod, unix MicroPython (x64)", nat))
    print("  %-38s %10.1f us/call   %6.0fx slower than natmod" % ("pure MicroPython, same algorithm", py, py / nat))
    print("  %-38s %10.1f us/call   %6.1fx the natmod's time" % ("host_sim numpy, CPython", np_us, np_us / nat))
    same = res["SAME"] == "True" and res["OUT"] == bytes(out).hex()
    print("  outputs identical across the three: %s" % ("yes" if same else "NO"))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
