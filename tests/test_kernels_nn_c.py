"""The int8 inference kernels of ABI 2 (natmod/ta_conv.c, ta_pool.c,
ta_eltwise.c and the gemmlowp helpers in ta_fixedpoint.c), built as a host
shared library, against host_sim's numpy `_tinyadapt`, exact; host_sim
against straight-loop pure-Python integer references written from TFLite's
reference kernels; and values worked out by hand from the rules (never
produced by the code under test).

TA_HOSTLIB_SANITIZE=1 loads the -fsanitize=undefined,address build instead;
test_sanitizers runs this whole module that way in a child process.
"""

import ctypes
import math
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "host_sim"))

import _tinyadapt as sim  # noqa: E402
from _tinyadapt import fixedpoint as fp  # noqa: E402
from test_kernels_c import (  # noqa: E402
    SANITIZE,
    Placed,
    _lib_path,
    _sanitizer_env,
    build_hostlib,
    i8_bytes,
    i32_bytes,
)

I32_MIN = -(1 << 31)
I32_MAX = (1 << 31) - 1
TA_OK, TA_ERR_NULL, TA_ERR_DIM, TA_ERR_RANGE, TA_ERR_ACT, TA_ERR_SHIFT, TA_ERR_MULT = \
    0, -1, -2, -3, -4, -5, -6
FILL = 0x77


class Geom(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int32) for n in (
        "batch", "in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h", "k_w",
        "stride_h", "stride_w", "pad_top", "pad_left")]


class AddParams(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int32) for n in (
        "in1_zp", "in1_mult", "in1_shift", "in2_zp", "in2_mult", "in2_shift",
        "out_zp", "out_mult", "out_shift", "act_min", "act_max")]


@pytest.fixture(scope="module")
def lib():
    path = build_hostlib.build(_lib_path(SANITIZE), sanitize=SANITIZE)
    L = ctypes.CDLL(path)
    i32, vp, c_int = ctypes.c_int32, ctypes.c_void_p, ctypes.c_int
    gp, ap = ctypes.POINTER(Geom), ctypes.POINTER(AddParams)
    sig = {
        "ta_sat_lshift": (i32, [i32, c_int]),
        "ta_mul_by_quantized_mult_gt1": (i32, [i32, i32, c_int]),
        "ta_rounding_half_sum": (i32, [i32, i32]),
        "ta_clz32": (c_int, [ctypes.c_uint32]),
        "ta_exp_on_interval_neg_quarter_0": (i32, [i32]),
        "ta_exp_on_negative_values_q5": (i32, [i32]),
        "ta_one_over_one_plus_x": (i32, [i32]),
        "ta_get_reciprocal": (i32, [i32, c_int, ctypes.POINTER(c_int)]),
        "ta_requant_i8": (ctypes.c_int8, [i32, i32, c_int, i32, i32, i32]),
        "ta_wadd": (i32, [i32, i32]),
        "ta_wsub": (i32, [i32, i32]),
        "ta_check_geom": (c_int, [gp, i32]),
        "ta_conv2d": (c_int, [vp] * 6 + [gp] + [i32] * 4),
        "ta_depthwise_conv2d": (c_int, [vp] * 6 + [gp] + [i32] * 5),
        "ta_avg_pool": (c_int, [vp, vp, gp, i32, i32]),
        "ta_max_pool": (c_int, [vp, vp, gp, i32, i32]),
        "ta_add": (c_int, [vp, vp, vp, i32, ap]),
        "ta_softmax": (c_int, [vp, vp] + [i32] * 5),
        "ta_argmax": (c_int, [vp, vp, i32, i32]),
    }
    for name, (res, args) in sig.items():
        f = getattr(L, name)
        f.restype = res
        f.argtypes = args
    return L


def s8(data):
    return np.frombuffer(bytes(data), dtype=np.int8).astype(np.int64)


def c_map(fn, *columns):
    return np.array([fn(*row) for row in zip(*columns)], dtype=np.int64)


def run_placed(fn, out_len, inputs, *rest, offsets=None):
    """Call fn(out, *inputs, *rest) on unaligned guarded copies; returns
    (status, out bytes) after checking no byte outside the buffers moved."""
    offsets = offsets or [1, 3, 2, 1, 3, 2, 1]
    out = Placed(bytes([FILL]) * out_len, offsets[0])
    bufs = [Placed(b, offsets[(k + 1) % len(offsets)]) for k, b in enumerate(inputs)]
    st = fn(out.ptr, *[b.ptr for b in bufs], *rest)
    assert out.guards_intact() and all(b.guards_intact() for b in bufs)
    return st, out.data()


# ------------------------------------------------ pure-Python references
# Straight loops in the order of TFLite's reference kernels, with their own
# scalar arithmetic written from the rules (not host_sim's).

def py_rdp(x, n):
    """x / 2^n rounded to nearest, ties away from zero."""
    q, r = divmod(abs(x), 1 << n)
    if 2 * r >= (1 << n) and n > 0:
        q += 1
    return q if x >= 0 else -q


def py_srdhm(a, b):
    if a == b == I32_MIN:
        return I32_MAX
    p = a * b
    v = p + ((1 << 30) if p >= 0 else 1 - (1 << 30))
    q = abs(v) >> 31  # C division truncates toward zero
    return q if v >= 0 else -q


def py_clamp(x, lo, hi):
    return max(lo, min(hi, x))


def py_mbqm(x, mult, shift):
    y = py_clamp(x * (1 << max(shift, 0)), I32_MIN, I32_MAX)
    return py_rdp(py_srdhm(y, mult), max(-shift, 0))


def py_wrap32(x):
    return (x + (1 << 31)) % (1 << 32) - (1 << 31)


def py_conv2d(x, w, bias, mult, shift, g, in_zp, out_zp, lo, hi):
    """x[b][y][x][c], w[oc][ky][kx][ic]; returns a flat list."""
    out = []
    for b in range(g["batch"]):
        for oy in range(g["out_h"]):
            for ox in range(g["out_w"]):
                for oc in range(g["out_c"]):
                    acc = 0
                    for ky in range(g["k_h"]):
                        for kx in range(g["k_w"]):
                            iy = oy * g["stride_h"] - g["pad_top"] + ky
                            ix = ox * g["stride_w"] - g["pad_left"] + kx
                            if 0 <= iy < g["in_h"] and 0 <= ix < g["in_w"]:
                                for ic in range(g["in_c"]):
                                    acc += w[oc][ky][kx][ic] * (x[b][iy][ix][ic] - in_zp)
                    acc = py_wrap32(acc + bias[oc])
                    out.append(py_clamp(py_mbqm(acc, mult[oc], shift[oc]) + out_zp, lo, hi))
    return out


def py_depthwise(x, w, bias, mult, shift, g, dm, in_zp, out_zp, lo, hi):
    """w[ky][kx][oc], oc = ic * dm + m."""
    out = []
    for b in range(g["batch"]):
        for oy in range(g["out_h"]):
            for ox in range(g["out_w"]):
                for ic in range(g["in_c"]):
                    for m in range(dm):
                        oc = ic * dm + m
                        acc = 0
                        for ky in range(g["k_h"]):
                            for kx in range(g["k_w"]):
                                iy = oy * g["stride_h"] - g["pad_top"] + ky
                                ix = ox * g["stride_w"] - g["pad_left"] + kx
                                if 0 <= iy < g["in_h"] and 0 <= ix < g["in_w"]:
                                    acc += w[ky][kx][oc] * (x[b][iy][ix][ic] - in_zp)
                        acc = py_wrap32(acc + bias[oc])
                        out.append(py_clamp(py_mbqm(acc, mult[oc], shift[oc]) + out_zp, lo, hi))
    # output order is (b, oy, ox, oc) with oc = ic * dm + m: the loop order above
    return out


def py_pool(x, g, lo, hi, kind):
    out = []
    for b in range(g["batch"]):
        for oy in range(g["out_h"]):
            for ox in range(g["out_w"]):
                for c in range(g["in_c"]):
                    acc, count, best = 0, 0, -128
                    for ky in range(g["k_h"]):
                        for kx in range(g["k_w"]):
                            iy = oy * g["stride_h"] - g["pad_top"] + ky
                            ix = ox * g["stride_w"] - g["pad_left"] + kx
                            if 0 <= iy < g["in_h"] and 0 <= ix < g["in_w"]:
                                v = x[b][iy][ix][c]
                                acc += v
                                count += 1
                                best = max(best, v)
                    if kind == "max":
                        out.append(py_clamp(best, lo, hi))
                    else:
                        # TFLite: (acc +- count / 2) / count with C's truncation
                        num = acc + count // 2 if acc > 0 else acc - count // 2
                        q = abs(num) // count
                        out.append(py_clamp(q if num >= 0 else -q, lo, hi))
    return out


def py_add(x1, x2, p):
    out = []
    for a, b in zip(x1, x2):
        sa = py_mbqm((a - p["in1_zp"]) * (1 << 20), p["in1_mult"], p["in1_shift"])
        sb = py_mbqm((b - p["in2_zp"]) * (1 << 20), p["in2_mult"], p["in2_shift"])
        r = py_mbqm(sa + sb, p["out_mult"], p["out_shift"]) + p["out_zp"]
        out.append(py_clamp(r, p["act_min"], p["act_max"]))
    return out


def nest(values, *shape):
    a = np.asarray(values, dtype=np.int64).reshape(shape)
    return a.tolist()


# ------------------------------------------------ random problems

def random_geom(rng, batch=None, k_max=4, explicit=None):
    in_h, in_w = int(rng.integers(1, 8)), int(rng.integers(1, 8))
    k_h = int(rng.integers(1, min(in_h, k_max) + 1))
    k_w = int(rng.integers(1, min(in_w, k_max) + 1))
    s_h, s_w = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    if explicit is None:
        explicit = rng.random() < 0.3
    if explicit:
        pt, pl = int(rng.integers(0, k_h)), int(rng.integers(0, k_w))
        oh = int(rng.integers(1, (in_h - 1 + pt) // s_h + 2))
        ow = int(rng.integers(1, (in_w - 1 + pl) // s_w + 2))
    else:
        mode = rng.choice(["same", "valid"])
        oh, pt = sim.compute_padding(mode, in_h, k_h, s_h)
        ow, pl = sim.compute_padding(mode, in_w, k_w, s_w)
    return dict(batch=batch or int(rng.integers(1, 3)), in_h=in_h, in_w=in_w,
                k_h=k_h, k_w=k_w, stride_h=s_h, stride_w=s_w, pad_top=pt, pad_left=pl,
                out_h=oh, out_w=ow)


def random_quant(rng, n_ch, fan_in, realistic=True):
    if realistic:
        bias = rng.integers(-20000, 20001, n_ch)
        mult = rng.integers(1 << 30, I32_MAX + 1, n_ch)
        top = max(fan_in, 1).bit_length()
        shift = rng.integers(-top - 9, -top - 4, n_ch)
    else:
        bias = rng.integers(I32_MIN, I32_MAX + 1, n_ch)
        mult = rng.integers(0, I32_MAX + 1, n_ch)
        shift = rng.integers(-31, 31, n_ch)
    zp = rng.integers(-128, 128, 2)
    lo, hi = sorted(int(v) for v in rng.integers(-128, 128, 2))
    if rng.random() < 0.5:
        lo, hi = -128, 127
    return bias, mult, shift, int(zp[0]), int(zp[1]), lo, hi


def conv_problem(rng, depthwise=False, realistic=True, geom=None):
    g = dict(geom or random_geom(rng))
    g["in_c"] = int(rng.integers(1, 5))
    if depthwise:
        dm = int(rng.integers(1, 4))
        g["out_c"] = g["in_c"] * dm
        w = rng.integers(-127, 128, (g["k_h"], g["k_w"], g["out_c"]))
        fan_in = g["k_h"] * g["k_w"]
    else:
        dm = None
        g["out_c"] = int(rng.integers(1, 6))
        w = rng.integers(-127, 128, (g["out_c"], g["k_h"], g["k_w"], g["in_c"]))
        fan_in = g["k_h"] * g["k_w"] * g["in_c"]
    x = rng.integers(-128, 128, (g["batch"], g["in_h"], g["in_w"], g["in_c"]))
    return g, dm, x, w, random_quant(rng, g["out_c"], fan_in, realistic)


def sim_conv(g, dm, x, w, q):
    bias, mult, shift, in_zp, out_zp, lo, hi = q
    out = bytearray(g["batch"] * g["out_h"] * g["out_w"] * g["out_c"])
    geo = [g[k] for k in ("k_h", "k_w", "stride_h", "stride_w", "pad_top", "pad_left",
                          "out_h", "out_w")]
    fn = sim.conv2d if dm is None else sim.depthwise_conv2d
    fourth = g["out_c"] if dm is None else dm
    fn(out, i8_bytes(x.ravel()), i8_bytes(w.ravel()), i32_bytes(bias), i32_bytes(mult),
       i32_bytes(shift), g["in_h"], g["in_w"], g["in_c"], fourth, *geo, in_zp, out_zp, lo, hi)
    return bytes(out)


def c_conv(lib, g, dm, x, w, q):
    bias, mult, shift, in_zp, out_zp, lo, hi = q
    geom = Geom(**g)
    n_out = g["batch"] * g["out_h"] * g["out_w"] * g["out_c"]
    inputs = [i8_bytes(x.ravel()), i8_bytes(w.ravel()), i32_bytes(bias), i32_bytes(mult),
              i32_bytes(shift)]
    if dm is None:
        return run_placed(lib.ta_conv2d, n_out, inputs, ctypes.byref(geom), in_zp, out_zp,
                          lo, hi)
    return run_placed(lib.ta_depthwise_conv2d, n_out, inputs, ctypes.byref(geom), dm, in_zp,
                      out_zp, lo, hi)


def py_conv(g, dm, x, w, q):
    bias, mult, shift, in_zp, out_zp, lo, hi = q
    args = (x.tolist(), w.tolist(), bias.tolist(), mult.tolist(), shift.tolist(), g)
    if dm is None:
        return i8_bytes(py_conv2d(*args, in_zp, out_zp, lo, hi))
    return i8_bytes(py_depthwise(*args, dm, in_zp, out_zp, lo, hi))


# ------------------------------------------------ fixed-point helpers, C vs numpy

EDGE = [I32_MIN, I32_MIN + 1, -(1 << 30) - 1, -(1 << 30), -(1 << 29), -(1 << 26),
        -(1 << 24) - 1, -(1 << 24), -(1 << 24) + 1, -65536, -255, -2, -1, 0, 1, 2, 255,
        (1 << 24), (1 << 29), (1 << 30) - 1, 1 << 30, I32_MAX - 1, I32_MAX]


def _rand_i32(rng, n):
    return np.concatenate([rng.integers(I32_MIN, I32_MAX + 1, n // 2),
                           rng.integers(-(1 << 20), 1 << 20, n - n // 2)])


def test_helpers_match_numpy(lib):
    rng = np.random.default_rng(100)
    a = np.concatenate([_rand_i32(rng, 3000), EDGE])
    b = np.concatenate([rng.permutation(_rand_i32(rng, 3000)), EDGE[::-1]])
    n = rng.integers(0, 32, a.size)
    assert np.array_equal(c_map(lib.ta_sat_lshift, a.tolist(), n.tolist()),
                          fp.sat_lshift(a, n))
    assert np.array_equal(c_map(lib.ta_rounding_half_sum, a.tolist(), b.tolist()),
                          fp.rounding_half_sum(a, b))
    assert np.array_equal(c_map(lib.ta_wadd, a.tolist(), b.tolist()), fp.wrap_i32(a + b))
    assert np.array_equal(c_map(lib.ta_wsub, a.tolist(), b.tolist()), fp.wrap_i32(a - b))
    u = (a & 0xFFFFFFFF)
    assert np.array_equal(c_map(lib.ta_clz32, u.tolist()), fp.clz32(u))
    m = np.abs(b) & I32_MAX
    assert np.array_equal(c_map(lib.ta_mul_by_quantized_mult_gt1, a.tolist(), m.tolist(),
                                n.tolist()),
                          fp.mul_by_quantized_mult_gt1(a, m, n))
    for fn, npf in [(lib.ta_exp_on_negative_values_q5, fp.exp_on_negative_values_q5),
                    (lib.ta_exp_on_interval_neg_quarter_0, fp.exp_on_interval_neg_quarter_0),
                    (lib.ta_one_over_one_plus_x, fp.one_over_one_plus_x)]:
        assert np.array_equal(c_map(fn, a.tolist()), npf(a)), fn.__name__


def test_get_reciprocal_and_requant_match_numpy(lib):
    rng = np.random.default_rng(101)
    x = np.concatenate([rng.integers(1, I32_MAX + 1, 1500), rng.integers(1 << 19, 1 << 28, 1500),
                        [1, 2, 1 << 19, (1 << 28) - 1, I32_MAX, 0, -1, I32_MIN]])
    bits = ctypes.c_int()
    got, got_bits = [], []
    for v in x.tolist():
        got.append(lib.ta_get_reciprocal(v, 12, ctypes.byref(bits)))
        got_bits.append(bits.value)
    want, want_bits = fp.get_reciprocal(x, 12)
    assert np.array_equal(got, want) and np.array_equal(got_bits, want_bits)
    acc = _rand_i32(rng, 2000)
    mult = rng.integers(0, I32_MAX + 1, acc.size)
    shift = rng.integers(-31, 31, acc.size)
    zp = rng.integers(-128, 128, acc.size)
    lo = rng.integers(-128, 0, acc.size)
    hi = rng.integers(0, 128, acc.size)
    got = c_map(lib.ta_requant_i8, acc.tolist(), mult.tolist(), shift.tolist(), zp.tolist(),
                lo.tolist(), hi.tolist())
    assert np.array_equal(got, fp.requant_to_i8(acc, mult, shift, zp, lo, hi))


def test_helpers_against_real_numbers():
    """The fixed-point functions approximate the real ones (gemmlowp accuracy)."""
    a = np.linspace(-(1 << 31), 0, 20001).astype(np.int64)
    e = fp.exp_on_negative_values_q5(a)
    assert np.max(np.abs(e / 2.0 ** 31 - np.exp(a / 2.0 ** 26))) < 1e-6
    q = np.linspace(-(1 << 29), -1, 5001).astype(np.int64)
    e = fp.exp_on_interval_neg_quarter_0(q)
    # a 4th-order Taylor expansion around -1/8: error <= (1/8)^5 / 5! = 2.5e-7
    assert np.max(np.abs(e / 2.0 ** 31 - np.exp(q / 2.0 ** 31))) < 2.6e-7
    x = np.linspace(0, I32_MAX, 5001).astype(np.int64)
    r = fp.one_over_one_plus_x(x)
    assert np.max(np.abs(r / 2.0 ** 31 - 1 / (1 + x / 2.0 ** 31))) < 1e-8
    s = np.arange(1 << 19, 1 << 28, 4099, dtype=np.int64)
    recip, bits = fp.get_reciprocal(s, 12)
    real = recip / 2.0 ** 31 * 2.0 ** -bits.astype(float)  # 1 / (s / 2^19)
    assert np.max(np.abs(real * (s / 2.0 ** 19) - 1)) < 1e-8


def test_helpers_hand_values(lib):
    # sat_lshift saturates at both ends and is exact in between
    assert lib.ta_sat_lshift(1 << 29, 1) == 1 << 30
    assert lib.ta_sat_lshift(1 << 30, 1) == I32_MAX
    assert lib.ta_sat_lshift(-(1 << 30), 1) == I32_MIN
    assert lib.ta_sat_lshift(-(1 << 30) - 1, 1) == I32_MIN
    assert lib.ta_sat_lshift(-1, 31) == I32_MIN and lib.ta_sat_lshift(1, 31) == I32_MAX
    # RoundingHalfSum: (3 + 4) / 2 = 3.5 -> 4; (-3 - 4) / 2 = -3.5 -> -4; (-1 + 0) -> -1
    assert [lib.ta_rounding_half_sum(*p) for p in [(3, 4), (-3, -4), (-1, 0), (1, 0)]] == \
        [4, -4, -1, 1]
    assert lib.ta_rounding_half_sum(I32_MAX, I32_MAX) == I32_MAX
    assert lib.ta_rounding_half_sum(I32_MIN, I32_MIN) == I32_MIN
    assert [lib.ta_clz32(v) for v in (0, 1, 0x80000000, 1 << 19, 0xFFFF)] == [32, 31, 0, 12, 16]
    # exp(0) is One (INT32_MAX); the input -1 in Q5.26 applies only the barrel
    # step for 2^0 to exp(-1/4)-ish terms: the result is near exp(-1) * 2^31
    assert lib.ta_exp_on_negative_values_q5(0) == I32_MAX
    assert abs(lib.ta_exp_on_negative_values_q5(-(1 << 26)) - math.exp(-1) * 2 ** 31) < 500
    # exp(-32) * 2^31 ~ 2.7e-5: zero
    assert lib.ta_exp_on_negative_values_q5(I32_MIN) == 0
    # requant: mult 2^30 and shift 1 is the identity, shift 0 halves (ties up in srdhm)
    assert lib.ta_requant_i8(37, 1 << 30, 1, 0, -128, 127) == 37
    assert lib.ta_requant_i8(5, 1 << 30, 0, 0, -128, 127) == 3
    assert lib.ta_requant_i8(-5, 1 << 30, 0, 0, -128, 127) == -2
    assert lib.ta_requant_i8(I32_MAX, I32_MAX, 30, 100, -128, 127) == 127
    assert lib.ta_requant_i8(I32_MIN, I32_MAX, 30, -100, -128, 127) == -128


# ------------------------------------------------ geometry, padding, parameters

def test_compute_padding_hand_values():
    # SAME: out = ceil(in / s); total = (out - 1) * s + k - in, half before
    assert sim.compute_padding("same", 5, 3, 2) == (3, 1)   # total 2
    assert sim.compute_padding("SAME", 4, 2, 2) == (2, 0)   # total 0
    assert sim.compute_padding("same", 4, 4, 1) == (4, 1)   # total 3: 1 before, 2 after
    assert sim.compute_padding("same", 1, 3, 3) == (1, 1)   # total 2
    assert sim.compute_padding("same", 7, 1, 3) == (3, 0)
    # VALID: out = (in - k) // s + 1, no padding
    assert sim.compute_padding("valid", 5, 3, 2) == (2, 0)
    assert sim.compute_padding("VALID", 4, 4, 1) == (1, 0)
    assert sim.compute_padding("valid", 6, 1, 4) == (2, 0)
    for bad in [("full", 3, 3, 1), ("valid", 2, 3, 1), ("same", 0, 1, 1), ("same", 3, 1, 0)]:
        with pytest.raises(ValueError):
            sim.compute_padding(*bad)


def test_compute_padding_gives_valid_kernel_geometry(lib):
    """Every SAME/VALID result is accepted by the kernels' geometry check, and
    no window lies outside the input (TFLite's pad_total <= k - 1)."""
    for mode in ("same", "valid"):
        for in_size in range(1, 12):
            for k in range(1, 6):
                for s in range(1, 5):
                    if mode == "valid" and k > in_size:
                        continue
                    out, pad = sim.compute_padding(mode, in_size, k, s)
                    g = Geom(batch=1, in_h=in_size, in_w=1, in_c=1, out_h=out, out_w=1,
                             out_c=1, k_h=k, k_w=1, stride_h=s, stride_w=1, pad_top=pad,
                             pad_left=0)
                    assert lib.ta_check_geom(ctypes.byref(g), 65535) == TA_OK


def test_quantize_multiplier_and_softmax_params_hand_values():
    assert sim.quantize_multiplier(0.5) == (1 << 30, 0)
    assert sim.quantize_multiplier(1.0) == (1 << 30, 1)
    assert sim.quantize_multiplier(0.75) == (3 << 29, 0)
    assert sim.quantize_multiplier(0.0) == (0, 0)
    assert sim.quantize_multiplier(2.0 ** -40) == (0, 0)       # shift < -31 flushes
    assert sim.quantize_multiplier(1 - 2.0 ** -40) == (1 << 30, 1)  # rounds up to 2^31
    # beta * scale * 2^26: 1.0 -> 2^26 = 0.5 * 2^27 -> (2^30, 27);
    # diff_min = -floor(31 * 2^26 / 2^27) = -15
    assert sim.softmax_params(1.0) == (1 << 30, 27, -15)
    # 0.1 as float32 is 13421773 / 2^27, times 2^26 = 6710886.5 = 0.8000000119 * 2^23;
    # mult = 6710886.5 * 2^8 = 1717986944; diff_min = -31 * 2^3 = -248
    assert sim.softmax_params(0.1) == (1717986944, 23, -248)
    # capped at 2^31 - 1 = (2^31 - 1) / 2^31 * 2^31: shift 31, radius floor(31/32) = 0
    assert sim.softmax_params(100.0) == (I32_MAX, 31, 0)
    assert sim.softmax_params(0.5, beta=2.0) == (1 << 30, 27, -15)
    with pytest.raises(ValueError):
        sim.softmax_params(2.0 ** -27)


# ------------------------------------------------ conv2d / depthwise

@pytest.mark.parametrize("depthwise", [False, True])
@pytest.mark.parametrize("realistic", [True, False])
def test_conv_c_matches_numpy(lib, depthwise, realistic):
    rng = np.random.default_rng(200 + 2 * depthwise + realistic)
    distinct = set()
    for _ in range(60):
        g, dm, x, w, q = conv_problem(rng, depthwise, realistic)
        st, got = c_conv(lib, g, dm, x, w, q)
        assert st == TA_OK
        assert got == sim_conv(g, dm, x, w, q), g
        distinct.update(got)
    if realistic:
        assert len(distinct) > 150  # not just the clamps


@pytest.mark.parametrize("depthwise", [False, True])
def test_conv_numpy_matches_straight_loops(depthwise):
    rng = np.random.default_rng(210 + depthwise)
    for i in range(40):
        g, dm, x, w, q = conv_problem(rng, depthwise, realistic=i % 4 != 3)
        assert sim_conv(g, dm, x, w, q) == py_conv(g, dm, x, w, q), g


def test_conv_bias_wraps_and_extreme_zero_points(lib):
    rng = np.random.default_rng(220)
    for in_zp, out_zp in [(-128, 127), (127, -128), (0, 0)]:
        g = dict(batch=1, in_h=3, in_w=3, k_h=2, k_w=2, stride_h=1, stride_w=1, pad_top=1,
                 pad_left=0, out_h=3, out_w=2)
        for dw in (False, True):
            g2, dm, x, w, _ = conv_problem(rng, dw, geom=g)
            n = g2["out_c"]
            q = (np.array([I32_MAX, I32_MIN] * n)[:n], np.full(n, I32_MAX), np.full(n, -20),
                 in_zp, out_zp, -128, 127)
            st, got = c_conv(lib, g2, dm, x, w, q)
            assert st == TA_OK
            assert got == sim_conv(g2, dm, x, w, q) == py_conv(g2, dm, x, w, q)


def _identity(n):
    """mult 2^30 with shift 1: srdhm(2 * acc, 2^30) = acc, no rounding."""
    return np.zeros(n, np.int64), np.full(n, 1 << 30), np.full(n, 1)


def _conv_both(lib, g, dm, x, w, q):
    st, got = c_conv(lib, g, dm, np.asarray(x), np.asarray(w), q)
    assert st == TA_OK
    assert got == sim_conv(g, dm, np.asarray(x), np.asarray(w), q)
    return list(s8(got))


def test_conv2d_hand_values(lib):
    # input 3x3 [[1,2,3],[4,5,6],[7,8,9]] with in_zp 1 -> [[0,1,2],[3,4,5],[6,7,8]];
    # 2x2 filter of ones, VALID: window sums 8, 12, 20, 24; bias 10, out_zp -3
    x = np.arange(1, 10).reshape(1, 3, 3, 1)
    w = np.ones((1, 2, 2, 1), np.int64)
    g = dict(batch=1, in_h=3, in_w=3, in_c=1, out_c=1, k_h=2, k_w=2, stride_h=1,
             stride_w=1, pad_top=0, pad_left=0, out_h=2, out_w=2)
    _, mult, shift = _identity(1)
    q = (np.array([10]), mult, shift, 1, -3, -128, 127)
    assert _conv_both(lib, g, None, x, w, q) == [15, 19, 27, 31]
    # 3x3 ones, stride 2, SAME: out 2x2, pad_top = pad_left = 1; the windows keep
    # rows/cols {0,1}, {1,2}: sums 0+1+3+4 = 8, 1+2+4+5 = 12, 3+4+6+7 = 20, 24.
    # Padding adds nothing although in_zp = 1 (TFLite pads with the zero point).
    assert sim.compute_padding("same", 3, 3, 2) == (2, 1)
    g.update(k_h=3, k_w=3, stride_h=2, stride_w=2, pad_top=1, pad_left=1)
    w = np.ones((1, 3, 3, 1), np.int64)
    q = (np.array([0]), mult, shift, 1, 0, -128, 127)
    assert _conv_both(lib, g, None, x, w, q) == [8, 12, 20, 24]
    # per channel, double rounding: 1x1 filters +5 and -5 on the value 1 (zp 0),
    # mult 2^30 (1/2) shift -1 (1/2): srdhm gives 2.5 -> 3 and -2.5 -> -2, then
    # / 2 rounds 1.5 -> 2 and -1 -> -1 (single rounding of +-1.25 would give +-1)
    g = dict(batch=1, in_h=1, in_w=1, in_c=1, out_c=2, k_h=1, k_w=1, stride_h=1,
             stride_w=1, pad_top=0, pad_left=0, out_h=1, out_w=1)
    q = (np.array([0, 0]), np.array([1 << 30] * 2), np.array([-1, -1]), 0, 0, -128, 127)
    assert _conv_both(lib, g, None, [[[[1]]]], [[[[5]]], [[[-5]]]], q) == [2, -1]
    # ReLU6-style clamp [0, 6] and the output zero point: 2x1 channel sums
    # x = (3, 4) with weights (1, 2) and (-1, -1): 11 and -7
    g.update(in_c=2)
    _, mult, shift = _identity(2)
    q = (np.array([0, 0]), mult, shift, 0, 0, 0, 6)
    assert _conv_both(lib, g, None, [[[[3, 4]]]], [[[[1, 2]]], [[[-1, -1]]]], q) == [6, 0]


def test_depthwise_hand_values(lib):
    # 2x2 input, channels (1, 2, 3, 4) and (10, 20, 30, 40), depth multiplier 2,
    # 2x2 VALID filter: oc 0 = ch0 * 1 (sum 10), oc 1 = ch0 * 2 (20),
    # oc 2 = ch1 * -1 (-100), oc 3 = ch1 at the first cell only (10)
    x = np.array([[1, 10], [2, 20], [3, 30], [4, 40]]).reshape(1, 2, 2, 2)
    w = np.zeros((2, 2, 4), np.int64)
    w[:, :, 0], w[:, :, 1], w[:, :, 2] = 1, 2, -1
    w[0, 0, 3] = 1
    g = dict(batch=1, in_h=2, in_w=2, in_c=2, out_c=4, k_h=2, k_w=2, stride_h=1,
             stride_w=1, pad_top=0, pad_left=0, out_h=1, out_w=1)
    bias, mult, shift = _identity(4)
    q = (bias, mult, shift, 0, 0, -128, 127)
    assert _conv_both(lib, g, 2, x, w, q) == [10, 20, -100, 10]
    # SAME padding skips outside cells: 3x3 ones over a 1x1 input is the value itself
    g = dict(batch=1, in_h=1, in_w=1, in_c=1, out_c=1, k_h=3, k_w=3, stride_h=1,
             stride_w=1, pad_top=1, pad_left=1, out_h=1, out_w=1)
    bias, mult, shift = _identity(1)
    q = (bias, mult, shift, -5, 0, -128, 127)
    assert _conv_both(lib, g, 1, [[[[7]]]], np.ones((3, 3, 1), np.int64), q) == [12]


# ------------------------------------------------ pooling

def pool_problem(rng, kind, geom=None):
    g = dict(geom or random_geom(rng))
    g["in_c"] = g["out_c"] = int(rng.integers(1, 5))
    x = rng.integers(-128, 128, (g["batch"], g["in_h"], g["in_w"], g["in_c"]))
    lo, hi = sorted(int(v) for v in rng.integers(-128, 128, 2))
    if rng.random() < 0.6:
        lo, hi = -128, 127
    return g, x, lo, hi


def sim_pool(kind, g, x, lo, hi):
    out = bytearray(g["batch"] * g["out_h"] * g["out_w"] * g["out_c"])
    fn = sim.avg_pool if kind == "avg" else sim.max_pool
    fn(out, i8_bytes(x.ravel()), g["in_h"], g["in_w"], g["in_c"], g["k_h"], g["k_w"],
       g["stride_h"], g["stride_w"], g["pad_top"], g["pad_left"], g["out_h"], g["out_w"], lo, hi)
    return bytes(out)


def c_pool(lib, kind, g, x, lo, hi):
    geom = Geom(**g)
    fn = lib.ta_avg_pool if kind == "avg" else lib.ta_max_pool
    return run_placed(fn, g["batch"] * g["out_h"] * g["out_w"] * g["out_c"],
                      [i8_bytes(x.ravel())], ctypes.byref(geom), lo, hi)


@pytest.mark.parametrize("kind", ["avg", "max"])
def test_pool_c_matches_numpy_and_loops(lib, kind):
    rng = np.random.default_rng(300 + (kind == "max"))
    for i in range(80):
        g, x, lo, hi = pool_problem(rng, kind)
        st, got = c_pool(lib, kind, g, x, lo, hi)
        assert st == TA_OK
        want = sim_pool(kind, g, x, lo, hi)
        assert got == want, g
        if i < 40:
            assert want == i8_bytes(py_pool(x.tolist(), g, lo, hi, kind)), g


def test_global_average_pool(lib):
    """Global average pooling is avg_pool with the whole image as the window."""
    rng = np.random.default_rng(310)
    for h, w, c in [(1, 1, 3), (4, 4, 8), (7, 5, 2), (64, 64, 1)]:
        x = rng.integers(-128, 128, (2, h, w, c))
        g = dict(batch=2, in_h=h, in_w=w, in_c=c, out_c=c, k_h=h, k_w=w, stride_h=1,
                 stride_w=1, pad_top=0, pad_left=0, out_h=1, out_w=1)
        st, got = c_pool(lib, "avg", g, x, -128, 127)
        assert st == TA_OK and got == sim_pool("avg", g, x, -128, 127)
        # against the real mean, rounded half away from zero
        s = x.sum(axis=(1, 2))
        want = np.sign(s) * ((np.abs(s) * 2 + h * w) // (2 * h * w))
        assert np.array_equal(s8(got), want.ravel())
    # the extreme window, 4096 x 4096 cells of -128: the sum -2^31 is exact
    g = dict(batch=1, in_h=4096, in_w=4096, in_c=1, out_c=1, k_h=4096, k_w=4096,
             stride_h=1, stride_w=1, pad_top=0, pad_left=0, out_h=1, out_w=1)
    x = bytearray(b"\x80" * (1 << 24))
    st, got = run_placed(lib.ta_avg_pool, 1, [bytes(x)], ctypes.byref(Geom(**g)), -128, 127)
    assert (st, got) == (TA_OK, i8_bytes([-128]))
    # one cell 127 instead: (-2^31 + 255) / 2^24 = -127.99998 -> -128; and all
    # 127 but one -128: (127 * 2^24 - 255) / 2^24 = 126.99998 -> 127
    x[12345] = 127
    st, got = run_placed(lib.ta_avg_pool, 1, [bytes(x)], ctypes.byref(Geom(**g)), -128, 127)
    assert (st, got) == (TA_OK, i8_bytes([-128]))
    x = bytearray(b"\x7f" * (1 << 24))
    x[0] = 0x80
    st, got = run_placed(lib.ta_avg_pool, 1, [bytes(x)], ctypes.byref(Geom(**g)), -128, 127)
    assert (st, got) == (TA_OK, i8_bytes([127]))


def test_pool_hand_values(lib):
    def pool(kind, vals, k, s, pad, out_w, lo=-128, hi=127):
        g = dict(batch=1, in_h=1, in_w=len(vals), in_c=1, out_c=1, k_h=1, k_w=k,
                 stride_h=1, stride_w=s, pad_top=0, pad_left=pad, out_h=1, out_w=out_w)
        x = np.array(vals).reshape(1, 1, len(vals), 1)
        st, got = c_pool(lib, kind, g, x, lo, hi)
        assert st == TA_OK and got == sim_pool(kind, g, x, lo, hi)
        return list(s8(got))
    # windows of 2: 1.5 -> 2, -1.5 -> -2, 0.5 -> 1, -0.5 -> -1 (half away from zero)
    assert pool("avg", [1, 2, -1, -2, 1, 0, -1, 0], 2, 2, 0, 4) == [2, -2, 1, -1]
    # windows of 3: 1/3 -> 0, 2/3 -> 1, -2/3 -> -1, -1/3 -> 0
    assert pool("avg", [1, 0, 0, 2, 0, 0, -2, 0, 0, -1, 0, 0], 3, 3, 0, 4) == [0, 1, -1, 0]
    # SAME over [5, 6, 7] with k 2, s 2: windows [5, 6] -> 5.5 -> 6 and [7] alone
    # (count 1: the padded cell is not counted)
    assert sim.compute_padding("same", 3, 2, 2) == (2, 0)
    assert pool("avg", [5, 6, 7], 2, 2, 0, 2) == [6, 7]
    # padding before: k 3 over [-9, 3] with pad 1: windows [-, -9, 3] and [-9, 3, -]
    assert pool("avg", [-9, 3], 3, 1, 1, 2) == [-3, -3]
    # max: padding is not a value, and the activation clamps (ReLU)
    assert pool("max", [-100], 3, 1, 1, 1) == [-100]
    assert pool("max", [-5, -3, 4, 9], 2, 2, 0, 2, lo=0) == [0, 9]
    assert pool("max", [-128, -128], 2, 1, 0, 1) == [-128]
    assert pool("avg", [100, 120], 2, 1, 0, 1, lo=-6, hi=6) == [6]


# ------------------------------------------------ add

def add_problem(rng, n, realistic=True):
    if realistic:
        p = dict(in1_mult=int(rng.integers(1 << 30, I32_MAX + 1)),
                 in1_shift=int(rng.integers(-3, 1)),
                 in2_mult=int(rng.integers(1 << 30, I32_MAX + 1)),
                 in2_shift=int(rng.integers(-3, 1)),
                 out_mult=int(rng.integers(1 << 30, I32_MAX + 1)),
                 out_shift=int(rng.integers(-22, -16)))
    else:
        p = dict(in1_mult=int(rng.integers(0, I32_MAX + 1)), in1_shift=int(rng.integers(-31, 1)),
                 in2_mult=int(rng.integers(0, I32_MAX + 1)), in2_shift=int(rng.integers(-31, 1)),
                 out_mult=int(rng.integers(0, I32_MAX + 1)), out_shift=int(rng.integers(-31, 1)))
    zp = rng.integers(-128, 128, 3)
    p.update(in1_zp=int(zp[0]), in2_zp=int(zp[1]), out_zp=int(zp[2]))
    lo, hi = sorted(int(v) for v in rng.integers(-128, 128, 2))
    if rng.random() < 0.6:
        lo, hi = -128, 127
    p.update(act_min=lo, act_max=hi)
    x1, x2 = rng.integers(-128, 128, n), rng.integers(-128, 128, n)
    return x1, x2, p


ADD_ORDER = ["in1_zp", "in1_mult", "in1_shift", "in2_zp", "in2_mult", "in2_shift", "out_zp",
             "out_mult", "out_shift", "act_min", "act_max"]


def sim_add(x1, x2, p):
    out = bytearray(len(x1))
    sim.add(out, i8_bytes(x1), i8_bytes(x2), *[p[k] for k in ADD_ORDER])
    return bytes(out)


def c_add(lib, x1, x2, p):
    params = AddParams(**p)
    return run_placed(lib.ta_add, len(x1), [i8_bytes(x1), i8_bytes(x2)], len(x1),
                      ctypes.byref(params))


@pytest.mark.parametrize("realistic", [True, False])
def test_add_c_matches_numpy_and_loops(lib, realistic):
    rng = np.random.default_rng(400 + realistic)
    for i in range(60):
        x1, x2, p = add_problem(rng, int(rng.integers(0, 70)), realistic)
        st, got = c_add(lib, x1, x2, p)
        assert st == TA_OK
        assert got == sim_add(x1, x2, p), p
        if i < 30:
            assert got == i8_bytes(py_add(x1.tolist(), x2.tolist(), p)), p
    # every pair of int8 values once, with extreme zero points
    a, b = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128))
    _, _, p = add_problem(rng, 0)
    p.update(in1_zp=-128, in2_zp=127)
    st, got = c_add(lib, a.ravel(), b.ravel(), p)
    assert st == TA_OK and got == sim_add(a.ravel(), b.ravel(), p)


def test_add_hand_values(lib):
    # both inputs scaled by 1/2 (mult 2^30, shift 0), output by 2^-20 * 2
    # (mult 2^30, shift -19): out = in1 / 2 + in2 / 2 with exact intermediates
    p = dict(in1_zp=0, in1_mult=1 << 30, in1_shift=0, in2_zp=0, in2_mult=1 << 30, in2_shift=0,
             out_zp=0, out_mult=1 << 30, out_shift=-19, act_min=-128, act_max=127)
    x1, x2 = [10, 1, -1, 3, 127, -128], [20, 0, 0, 0, 127, -128]
    # 15; 0.5 -> 1 and -0.5 -> -1 (half away from zero); 1.5 -> 2; 127; -128
    want = [15, 1, -1, 2, 127, -128]
    st, got = c_add(lib, x1, x2, p)
    assert st == TA_OK and list(s8(got)) == want and got == sim_add(x1, x2, p)
    # zero points: (in1 - 5) / 2 + (in2 + 3) / 2 + 7, clamped to [0, 20]
    p.update(in1_zp=5, in2_zp=-3, out_zp=7, act_min=0, act_max=20)
    x1, x2 = [5, 25, -50], [-3, 17, -3]
    # 0 + 0 + 7 = 7; 10 + 10 + 7 = 27 -> 20; -27.5 + 0 + 7 -> clamp 0
    st, got = c_add(lib, x1, x2, p)
    assert st == TA_OK and list(s8(got)) == [7, 20, 0] and got == sim_add(x1, x2, p)


def test_add_in_place(lib):
    rng = np.random.default_rng(410)
    x1, x2, p = add_problem(rng, 33)
    want = sim_add(x1, x2, p)
    a, b = Placed(i8_bytes(x1), 1), Placed(i8_bytes(x2), 2)
    assert lib.ta_add(a.ptr, a.ptr, b.ptr, 33, ctypes.byref(AddParams(**p))) == TA_OK
    assert a.data() == want
    buf = bytearray(i8_bytes(x1))
    sim.add(buf, buf, i8_bytes(x2), *[p[k] for k in ADD_ORDER])
    assert bytes(buf) == want


# ------------------------------------------------ softmax

def sim_softmax(x, n, mult, shift, diff_min):
    out = bytearray(len(x))
    sim.softmax(out, i8_bytes(x), n, mult, shift, diff_min)
    return bytes(out)


def c_softmax(lib, x, n, mult, shift, diff_min):
    return run_placed(lib.ta_softmax, len(x), [i8_bytes(x)], len(x) // n, n, mult, shift,
                      diff_min)


def test_softmax_c_matches_numpy(lib):
    rng = np.random.default_rng(500)
    for i in range(150):
        rows, n = int(rng.integers(1, 5)), int(rng.choice([1, 2, 3, 10, 40, 100, 511]))
        scale = float(rng.choice([rng.uniform(0.001, 0.5), 1 / 16, 0.1, 1.0, 20.0]))
        beta = float(rng.choice([1.0, 0.5, 2.0]))
        mult, shift, diff_min = sim.softmax_params(scale, beta)
        if i % 5 == 4:  # any parameters in range, including those TFLite never makes
            mult, shift = int(rng.integers(0, I32_MAX + 1)), int(rng.integers(0, 32))
            diff_min = int(rng.choice([0, -1, -255, I32_MIN, int(rng.integers(-300, 1))]))
        spread = int(rng.choice([3, 40, 255]))
        lo = int(rng.integers(-128, 128 - spread + 1)) if spread < 255 else -128
        x = rng.integers(lo, lo + spread + 1, rows * n)
        st, got = c_softmax(lib, x, n, mult, shift, diff_min)
        assert st == TA_OK
        assert got == sim_softmax(x, n, mult, shift, diff_min), (n, mult, shift, diff_min)
    # 511 equal values (the largest sum), and 511 values of which one is large
    for x in (np.full(511, 7), np.concatenate([[127], np.full(510, -128)])):
        args = (x, 511) + sim.softmax_params(1 / 16)
        st, got = c_softmax(lib, *args)
        assert st == TA_OK and got == sim_softmax(*args)


def test_softmax_hand_values(lib):
    p = sim.softmax_params(0.1)

    def both(x, n, params=p):
        st, got = c_softmax(lib, x, n, *params)
        assert st == TA_OK and got == sim_softmax(x, n, *params)
        return list(s8(got))
    # one value: probability 1 -> 256 - 128 = 128, clamped to 127
    assert both([5], 1) == [127]
    # k equal values: 1/k -> 256/k - 128
    assert both([3, 3], 2) == [0, 0]
    assert both([-7] * 4, 4) == [-64] * 4
    assert both([0] * 256, 256) == [-127] * 256
    # a difference below diff_min is exactly 0 (-128): with scale 0.1, diff_min
    # is -248, so use parameters whose diff_min is -10
    assert both([0, -20, -5], 3, (1 << 30, 27, -10))[1] == -128
    # rows are independent
    assert both([1, 1, 9, 9, 9, 9], 2) == [0, 0, 0, 0, 0, 0]


def test_softmax_matches_tflite_micro_goldens(lib):
    """TFLite Micro's own softmax_test.cc vectors (input scale 0.1, zero point 0,
    beta 1): float goldens, quantized with scale 1/256 and zero point -128; that
    test accepts +-1, and so does this one."""
    x = [1.0, 2.0, 3.0, 4.0, 5.0, -1.0, -2.0, -3.0, -4.0, -5.0]
    golden = [0.011656231, 0.031684921, 0.086128544, 0.234121657, 0.636408647,
              0.636408647, 0.234121657, 0.086128544, 0.031684921, 0.011656231]
    q = [int(round(v / 0.1)) for v in x]
    want = [min(127, int(round(v * 256)) - 128) for v in golden]
    st, got = c_softmax(lib, q, 5, *sim.softmax_params(0.1))
    assert st == TA_OK
    assert np.max(np.abs(s8(got) - want)) <= 1
    assert got == sim_softmax(q, 5, *sim.softmax_params(0.1))


def test_softmax_close_to_real_softmax():
    rng = np.random.default_rng(510)
    for scale in (0.02, 0.1, 0.3):
        x = rng.integers(-128, 128, (50, 10))
        got = s8(sim_softmax(x.ravel(), 10, *sim.softmax_params(scale))).reshape(50, 10)
        e = np.exp((x - x.max(axis=1, keepdims=True)) * np.float32(scale))
        real = e / e.sum(axis=1, keepdims=True)
        want = np.clip(np.round(real * 256) - 128, -128, 127)
        assert np.max(np.abs(got - want)) <= 1


# ------------------------------------------------ argmax

def test_argmax_c_matches_numpy_and_hand_values(lib):
    rng = np.random.default_rng(600)
    for _ in range(60):
        rows, n = int(rng.integers(1, 6)), int(rng.integers(1, 300))
        x = rng.integers(-128, int(rng.choice([-125, 127])) + 1, rows * n)
        st, got = run_placed(lib.ta_argmax, 4 * rows, [i8_bytes(x)], rows, n)
        assert st == TA_OK
        out = bytearray(4 * rows)
        sim.argmax(out, i8_bytes(x), n)
        assert got == bytes(out)
        # first index of the maximum, written as a loop
        for r in range(rows):
            row = list(x[r * n:(r + 1) * n])
            assert np.frombuffer(got, "<i4")[r] == row.index(max(row))
    x = [3, 7, 7, 1, -128, -128, -128, -128, -5, 0, 127, 127]
    st, got = run_placed(lib.ta_argmax, 12, [i8_bytes(x)], 3, 4)
    assert st == TA_OK and list(np.frombuffer(got, "<i4")) == [1, 0, 2]
    st, got = run_placed(lib.ta_argmax, 4, [i8_bytes([-1] * 65535)], 1, 65535)
    assert st == TA_OK and got == bytes(4)


# ------------------------------------------------ C status codes (defensive)

def _conv_ok(lib, depthwise=False):
    g = dict(batch=1, in_h=3, in_w=3, in_c=2, out_c=4 if depthwise else 3, k_h=2, k_w=2,
             stride_h=1, stride_w=1, pad_top=1, pad_left=1, out_h=3, out_w=3)
    return g


@pytest.mark.parametrize("field,value", [
    ("batch", 0), ("in_h", 0), ("in_w", 65536), ("in_c", 0), ("out_c", 65536), ("k_h", 0),
    ("k_w", 65536), ("stride_h", 0), ("stride_w", -1), ("pad_top", 2), ("pad_top", -1),
    ("pad_left", 2), ("out_h", 0), ("out_h", 5), ("out_w", 5), ("out_w", 65536),
])
def test_conv_geometry_status(lib, field, value):
    rng = np.random.default_rng(700)
    for dw in (False, True):
        g = _conv_ok(lib, dw)
        g2, dm, x, w, q = conv_problem(rng, dw, geom=g)
        g2.update(in_c=2, out_c=g["out_c"])
        if dw:
            dm = 2
        x = rng.integers(-128, 128, (1, 3, 3, 2))
        w = rng.integers(-127, 128, (2, 2, 4) if dw else (3, 2, 2, 2))
        q = random_quant(rng, g2["out_c"], 8)
        st, got = c_conv(lib, g2, dm, x, w, q)
        assert st == TA_OK
        g2[field] = value
        st, got = run_placed(lib.ta_depthwise_conv2d if dw else lib.ta_conv2d, 18,
                             [i8_bytes(x.ravel()), i8_bytes(w.ravel())]
                             + [i32_bytes(v) for v in q[:3]], ctypes.byref(Geom(**g2)),
                             *(([dm] if dw else []) + list(q[3:])))
        assert st == TA_ERR_DIM and got == bytes([FILL]) * 18


def test_geometry_volume_limits(lib):
    g = dict(batch=1, in_h=65535, in_w=65535, in_c=1, out_c=1, k_h=1, k_w=1, stride_h=1,
             stride_w=1, pad_top=0, pad_left=0, out_h=1, out_w=1)
    assert lib.ta_check_geom(ctypes.byref(Geom(**g)), 65535) == TA_ERR_DIM  # 2^32 cells
    g.update(in_w=32769)  # 65535 * 32769 > 2^31 - 1
    assert lib.ta_check_geom(ctypes.byref(Geom(**g)), 65535) == TA_ERR_DIM
    g.update(in_w=32767, batch=2)
    assert lib.ta_check_geom(ctypes.byref(Geom(**g)), 65535) == TA_ERR_DIM
    g.update(batch=1)
    assert lib.ta_check_geom(ctypes.byref(Geom(**g)), 65535) == TA_OK
    g.update(k_h=4097)
    assert lib.ta_check_geom(ctypes.byref(Geom(**g)), 4096) == TA_ERR_DIM
    assert lib.ta_check_geom(None, 4096) == TA_ERR_NULL


@pytest.mark.parametrize("idx,value,status", [
    (0, -129, TA_ERR_RANGE), (1, 128, TA_ERR_RANGE), (2, -129, TA_ERR_RANGE),
    (3, 128, TA_ERR_RANGE), (2, 5, TA_ERR_ACT),
])
def test_conv_quant_status(lib, idx, value, status):
    rng = np.random.default_rng(710)
    g, dm, x, w, q = conv_problem(rng, geom=_conv_ok(lib))
    tail = list(q[3:])
    tail[idx] = value
    if idx == 2 and value == 5:
        tail[3] = 4
    st, got = c_conv(lib, g, dm, x, w, tuple(q[:3]) + tuple(tail))
    assert st == status and got == bytes([FILL]) * len(got)


def test_conv_element_status_and_null(lib):
    rng = np.random.default_rng(720)
    for dw in (False, True):
        g, dm, x, w, q = conv_problem(rng, dw, geom=_conv_ok(lib))
        n = g["out_c"]
        for shift, mult, status in [([0] * (n - 1) + [31], [0] * n, TA_ERR_SHIFT),
                                    ([-32] + [0] * (n - 1), [-1] * n, TA_ERR_SHIFT),
                                    ([0] * n, [0] * (n - 1) + [-1], TA_ERR_MULT)]:
            q2 = (q[0], np.array(mult), np.array(shift)) + tuple(q[3:])
            st, got = c_conv(lib, g, dm, x, w, q2)
            assert st == status and got == bytes([FILL]) * len(got)
        ptrs = [Placed(b).ptr for b in (i8_bytes(x.ravel()), i8_bytes(w.ravel()),
                                         i32_bytes(q[0]), i32_bytes(q[1]), i32_bytes(q[2]))]
        out = Placed(bytes(64))
        for k in range(6):
            p = [out.ptr] + ptrs
            p[k] = None
            args = p + [ctypes.byref(Geom(**g))] + ([dm] if dw else []) + list(q[3:])
            assert (lib.ta_depthwise_conv2d if dw else lib.ta_conv2d)(*args) == TA_ERR_NULL
        args = [out.ptr] + ptrs + [None] + ([dm] if dw else []) + list(q[3:])
        assert (lib.ta_depthwise_conv2d if dw else lib.ta_conv2d)(*args) == TA_ERR_NULL
        assert out.data() == bytes(64)
    # depthwise: out_c must be in_c * depth_multiplier
    g, dm, x, w, q = conv_problem(rng, True, geom=_conv_ok(lib))
    for bad in (0, dm + 1):
        st, got = c_conv(lib, g, bad, x, w, q)
        assert st == TA_ERR_DIM and got == bytes([FILL]) * len(got)


def test_pool_status(lib):
    rng = np.random.default_rng(730)
    g = dict(batch=1, in_h=3, in_w=3, in_c=2, out_c=2, k_h=2, k_w=2, stride_h=1, stride_w=1,
             pad_top=0, pad_left=0, out_h=2, out_w=2)
    x = rng.integers(-128, 128, (1, 3, 3, 2))
    for kind in ("avg", "max"):
        assert c_pool(lib, kind, g, x, -128, 127)[0] == TA_OK
        for kw, lo, hi, status in [({"out_c": 3}, -128, 127, TA_ERR_DIM),
                                   ({"out_h": 4}, -128, 127, TA_ERR_DIM),
                                   ({}, -129, 127, TA_ERR_RANGE), ({}, -128, 128, TA_ERR_RANGE),
                                   ({}, 5, 4, TA_ERR_ACT)]:
            st, got = c_pool(lib, kind, dict(g, **kw), x, lo, hi)
            assert st == status and got == bytes([FILL]) * len(got)
    big = dict(g, k_h=4097, in_h=5000, out_h=1)
    x = np.zeros((1, 5000, 3, 2), np.int64)
    assert c_pool(lib, "avg", big, x, -128, 127)[0] == TA_ERR_DIM
    assert c_pool(lib, "max", big, x, -128, 127)[0] == TA_OK
    out = Placed(bytes(8))
    assert lib.ta_avg_pool(out.ptr, None, ctypes.byref(Geom(**g)), -128, 127) == TA_ERR_NULL
    assert lib.ta_max_pool(None, out.ptr, ctypes.byref(Geom(**g)), -128, 127) == TA_ERR_NULL
    assert lib.ta_max_pool(out.ptr, out.ptr, None, -128, 127) == TA_ERR_NULL


@pytest.mark.parametrize("key,value,status", [
    ("in1_zp", 128, TA_ERR_RANGE), ("in2_zp", -129, TA_ERR_RANGE), ("out_zp", 128, TA_ERR_RANGE),
    ("act_min", -129, TA_ERR_RANGE), ("act_max", 128, TA_ERR_RANGE), ("act_min", 100, TA_ERR_ACT),
    ("in1_shift", 1, TA_ERR_SHIFT), ("in2_shift", -32, TA_ERR_SHIFT),
    ("out_shift", 1, TA_ERR_SHIFT), ("in1_mult", -1, TA_ERR_MULT),
    ("in2_mult", I32_MIN, TA_ERR_MULT), ("out_mult", -5, TA_ERR_MULT),
])
def test_add_status(lib, key, value, status):
    rng = np.random.default_rng(740)
    x1, x2, p = add_problem(rng, 9)
    p.update(act_min=-128, act_max=50)
    p[key] = value
    st, got = c_add(lib, x1, x2, p)
    assert st == status and got == bytes([FILL]) * 9


def test_softmax_argmax_add_status(lib):
    x = i8_bytes([1, 2, 3, 4])
    for rows, n, mult, shift, dmin, status in [
            (0, 2, 1, 0, 0, TA_ERR_DIM), (2, 0, 1, 0, 0, TA_ERR_DIM),
            (1, 512, 1, 0, 0, TA_ERR_DIM), (2, 2, -1, 0, 0, TA_ERR_RANGE),
            (2, 2, 1, 32, 0, TA_ERR_RANGE), (2, 2, 1, -1, 0, TA_ERR_RANGE),
            (2, 2, 1, 0, 1, TA_ERR_RANGE)]:
        st, got = run_placed(lib.ta_softmax, 4, [x], rows, n, mult, shift, dmin)
        assert st == status and got == bytes([FILL]) * 4
    for rows, n in [(0, 2), (2, 0), (1, 65536)]:
        st, got = run_placed(lib.ta_argmax, 4, [x], rows, n)
        assert st == TA_ERR_DIM and got == bytes([FILL]) * 4
    out = Placed(bytes(4))
    assert lib.ta_softmax(None, out.ptr, 1, 4, 1, 0, 0) == TA_ERR_NULL
    assert lib.ta_argmax(out.ptr, None, 1, 4) == TA_ERR_NULL
    p = AddParams(in1_mult=1, in2_mult=1, out_mult=1, act_min=-128, act_max=127)
    assert lib.ta_add(out.ptr, out.ptr, out.ptr, -1, ctypes.byref(p)) == TA_ERR_DIM
    assert lib.ta_add(out.ptr, None, out.ptr, 4, ctypes.byref(p)) == TA_ERR_NULL
    assert lib.ta_add(out.ptr, out.ptr, out.ptr, 4, None) == TA_ERR_NULL
    assert lib.ta_add(out.ptr, out.ptr, out.ptr, 0, ctypes.byref(p)) == TA_OK
    assert out.data() == bytes(4)


# ------------------------------------------------ sanitizers

@pytest.mark.skipif(SANITIZE, reason="already the sanitized run")
def test_sanitizers():
    """This whole module against the UBSan + ASan build: no signed overflow,
    no shift of a negative value, no out-of-bounds access in the new kernels."""
    build_hostlib.build(_lib_path(True), sanitize=True)
    env = _sanitizer_env()
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
         os.path.abspath(__file__)],
        env=env, capture_output=True, text=True, cwd=ROOT, timeout=900)
    report = res.stdout[-3000:] + res.stderr[-3000:]
    assert res.returncode == 0, report
    assert "runtime error" not in res.stderr, report
    assert "AddressSanitizer" not in res.stderr, report
    assert " passed" in res.stdout, report
