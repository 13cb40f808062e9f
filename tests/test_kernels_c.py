"""The C kernels (natmod/ta_*.c built as a host shared library) against
host_sim's numpy `_tinyadapt`, exact, on random and edge inputs; plus expected
values written down by hand from the rules in natmod/ta_fixedpoint.h.

TA_HOSTLIB_SANITIZE=1 makes this module load the -fsanitize=undefined,address
build instead; test_sanitizers runs the whole module that way in a child
process (ASan must be the first library loaded, hence the child).
"""

import ctypes
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import require

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "host_sim"))

import _tinyadapt as sim  # noqa: E402
from _tinyadapt import fixedpoint as fp  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "build_hostlib", os.path.join(ROOT, "tools", "build_hostlib.py"))
build_hostlib = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_hostlib)

SANITIZE = os.environ.get("TA_HOSTLIB_SANITIZE") == "1"

I32_MIN = -(1 << 31)
I32_MAX = (1 << 31) - 1

TA_OK = 0
TA_ERR_NULL = -1
TA_ERR_DIM = -2
TA_ERR_RANGE = -3
TA_ERR_ACT = -4
TA_ERR_SHIFT = -5
TA_ERR_MULT = -6

EDGE_I32 = [
    I32_MIN, I32_MIN + 1, -(1 << 30) - 1, -(1 << 30), -(1 << 30) + 1, -65536,
    -256, -129, -128, -127, -5, -3, -2, -1, 0, 1, 2, 3, 5, 127, 128, 255,
    65535, (1 << 30) - 1, 1 << 30, (1 << 30) + 1, I32_MAX - 1, I32_MAX,
]


# ---------------------------------------------------------------- library

def _lib_path(sanitize):
    return build_hostlib.DEFAULT_SAN_OUT if sanitize else build_hostlib.DEFAULT_OUT


@pytest.fixture(scope="module")
def lib():
    path = build_hostlib.build(_lib_path(SANITIZE), sanitize=SANITIZE)
    L = ctypes.CDLL(path)
    i32, vp, c_int = ctypes.c_int32, ctypes.c_void_p, ctypes.c_int
    sig = {
        "ta_u32_to_i32": (i32, [ctypes.c_uint32]),
        "ta_asr": (i32, [i32, c_int]),
        "ta_rounding_rshift": (i32, [i32, c_int]),
        "ta_srdhm": (i32, [i32, i32]),
        "ta_mul_by_quantized_mult": (i32, [i32, i32, c_int]),
        "ta_saturate": (i32, [i32, i32, i32]),
        "ta_load_i32": (i32, [vp]),
        "ta_load_u32": (ctypes.c_uint32, [vp]),
        "ta_store_u32": (None, [vp, ctypes.c_uint32]),
        "ta_store_i32": (None, [vp, i32]),
        "ta_xorshift32_fill": (ctypes.c_uint32, [vp, ctypes.c_size_t, ctypes.c_uint32]),
        "ta_fully_connected": (c_int, [vp, vp, vp, vp, vp, vp] + [i32] * 7),
        "ta_requantize": (c_int, [vp, vp, vp, vp] + [i32] * 5),
    }
    for name, (res, args) in sig.items():
        f = getattr(L, name)
        f.restype = res
        f.argtypes = args
    return L


GUARD = 8


class Placed(object):
    """``data`` placed at an odd offset inside a bytearray with guard bytes on
    both sides: exercises unaligned access and catches stray writes."""

    def __init__(self, data, offset=1):
        data = bytes(data)
        self.offset = GUARD + offset
        self.n = len(data)
        self.mem = bytearray(b"\xa5" * self.offset + data + b"\x5a" * GUARD)
        self._c = (ctypes.c_uint8 * len(self.mem)).from_buffer(self.mem)
        self.ptr = ctypes.c_void_p(ctypes.addressof(self._c) + self.offset)

    def data(self):
        return bytes(self.mem[self.offset:self.offset + self.n])

    def guards_intact(self):
        return (self.mem[:self.offset] == b"\xa5" * self.offset
                and self.mem[self.offset + self.n:] == b"\x5a" * GUARD)


def i32_bytes(values):
    return np.asarray(values, dtype=np.int64).astype("<i4").tobytes()


def i8_bytes(values):
    return np.asarray(values, dtype=np.int64).astype(np.int8).tobytes()


def c_fc(lib, inp, w, bias, mult, shift, n_in, n_out, in_zp, out_zp, act_min,
         act_max, n_batch=None, offsets=(1, 3, 2, 1, 3, 2), fill=0x77):
    """Run ta_fully_connected on placed (unaligned) copies; returns
    (status, out bytes)."""
    if n_batch is None:
        n_batch = len(inp) // n_in
    out = Placed(bytes([fill]) * (n_batch * n_out), offsets[0])
    bufs = [Placed(b, o) for b, o in zip(
        (inp, w, bias, mult, shift), offsets[1:])]
    st = lib.ta_fully_connected(out.ptr, *[b.ptr for b in bufs], n_batch, n_in,
                                n_out, in_zp, out_zp, act_min, act_max)
    assert out.guards_intact()
    assert all(b.guards_intact() for b in bufs)
    return st, out.data()


def c_requant(lib, inp, mult, shift, out_zp, act_min, act_max, n=None,
              n_ch=None, offsets=(3, 1, 2, 1), fill=0x77):
    if n is None:
        n = len(inp) // 4
    if n_ch is None:
        n_ch = len(mult) // 4
    out = Placed(bytes([fill]) * n, offsets[0])
    bufs = [Placed(b, o) for b, o in zip((inp, mult, shift), offsets[1:])]
    st = lib.ta_requantize(out.ptr, *[b.ptr for b in bufs], n, n_ch, out_zp,
                           act_min, act_max)
    assert out.guards_intact()
    assert all(b.guards_intact() for b in bufs)
    return st, out.data()


def sim_fc(inp, w, bias, mult, shift, n_in, n_out, in_zp, out_zp, act_min, act_max):
    out = bytearray(len(inp) // n_in * n_out)
    sim.fully_connected(out, inp, w, bias, mult, shift, n_in, n_out, in_zp,
                        out_zp, act_min, act_max)
    return bytes(out)


def sim_requant(inp, mult, shift, out_zp, act_min, act_max):
    out = bytearray(len(inp) // 4)
    sim.requantize(out, inp, mult, shift, out_zp, act_min, act_max)
    return bytes(out)


def c_map(f, *cols):
    return np.array([f(*args) for args in zip(*cols)], dtype=np.int64)


# ------------------------------------------------- hand-computed values

# Each expected value is written from the rule, not from running code:
# rounding_rshift rounds x / 2^n to nearest, ties away from zero.
RSHIFT_CASES = [
    (5, 1, 3), (-5, 1, -3), (1, 1, 1), (-1, 1, -1), (-4, 2, -1), (-5, 2, -1),
    (-6, 2, -2), (-7, 2, -2), (6, 2, 2), (7, 2, 2), (0, 31, 0),
    (I32_MIN, 0, I32_MIN), (I32_MAX, 0, I32_MAX), (I32_MAX, 31, 1),
    (I32_MIN, 31, -1), (1 << 30, 31, 1), (-(1 << 30), 31, -1),
    ((1 << 30) - 1, 31, 0), (-(1 << 30) + 1, 31, 0), (1, 31, 0), (-1, 31, 0),
    (I32_MIN, 1, -(1 << 30)), (I32_MAX, 1, 1 << 30),
]

# srdhm = a*b / 2^31 rounded to nearest, ties toward +inf, MIN*MIN -> MAX.
SRDHM_CASES = [
    (I32_MIN, I32_MIN, I32_MAX),
    (I32_MIN, I32_MAX, -2147483647),        # exactly -(2^31 - 1)
    (I32_MAX, I32_MAX, 2147483646),         # 2^31 - 2 + 2^-31
    (1 << 30, 1 << 30, 1 << 29),
    (1 << 30, 1, 1),                        # +0.5 -> 1
    (-(1 << 30), 1, 0),                     # -0.5 -> 0
    (-(1 << 30), -1, 1),                    # +0.5 -> 1
    (3 << 29, 1, 1),                        # 0.75
    (1 << 29, 1, 0),                        # 0.25
    (-(3 << 29), 1, -1),                    # -0.75
    (I32_MIN, 1, -1), (I32_MIN, -1, 1), (I32_MAX, 1, 1), (0, I32_MIN, 0),
    (I32_MIN, 1 << 30, -(1 << 30)),
    (100, 1 << 30, 50), (101, 1 << 30, 51), (-101, 1 << 30, -50),
]

# requant = rounding_rshift(srdhm(sat32(x << left), mult), right)
MQM_CASES = [
    (100, 1 << 30, 0, 50),
    (100, 1 << 30, -1, 25),
    (101, 1 << 30, -1, 26),      # double rounding: 50.5 -> 51 -> 25.5 -> 26
    (-101, 1 << 30, -1, -25),    # -50.5 -> -50 -> -25
    (-3, 1 << 30, -1, -1),       # -1.5 -> -1 -> -0.5 -> -1
    (I32_MAX, 0, 30, 0),
    (I32_MIN, 0, -31, 0),
    (I32_MAX, I32_MAX, 0, 2147483646),
    (1, I32_MAX, 30, 1 << 30),   # 2^30 - 0.5 -> 2^30
    (2, I32_MAX, 30, 2147483646),   # 2^31 saturates to MAX
    (-2, I32_MAX, 30, -2147483647),  # -2^31 fits exactly
    (-3, I32_MAX, 30, -2147483647),  # saturates to MIN
    (I32_MIN, I32_MAX, -31, -1),
    (I32_MAX, 1 << 30, -31, 1),  # 2^30 / 2^31 = 0.5 -> 1
    (I32_MIN, 1 << 30, -31, -1),  # -0.5 -> -1
    (3, 1 << 30, 2, 6),          # 12 * 0.5
]

SAT_CASES = [(5, -3, 3, 3), (-5, -3, 3, -3), (0, -3, 3, 0),
             (I32_MIN, I32_MIN, I32_MAX, I32_MIN), (I32_MAX, 0, 0, 0)]


@pytest.mark.parametrize("x,n,want", RSHIFT_CASES)
def test_rounding_rshift_by_hand(lib, x, n, want):
    assert lib.ta_rounding_rshift(x, n) == want
    assert sim.rounding_rshift(x, n) == want


@pytest.mark.parametrize("a,b,want", SRDHM_CASES)
def test_srdhm_by_hand(lib, a, b, want):
    assert lib.ta_srdhm(a, b) == want
    assert lib.ta_srdhm(b, a) == want
    assert sim.srdhm(a, b) == want


@pytest.mark.parametrize("x,m,s,want", MQM_CASES)
def test_mul_by_quantized_mult_by_hand(lib, x, m, s, want):
    assert lib.ta_mul_by_quantized_mult(x, m, s) == want
    assert sim.mul_by_quantized_mult(x, m, s) == want


@pytest.mark.parametrize("x,lo,hi,want", SAT_CASES)
def test_saturate_by_hand(lib, x, lo, hi, want):
    assert lib.ta_saturate(x, lo, hi) == want
    assert sim.saturate(x, lo, hi) == want


def test_asr_by_hand(lib):
    for x, n, want in [(-1, 31, -1), (-5, 1, -3), (-4, 1, -2), (5, 1, 2),
                       (I32_MIN, 31, -1), (I32_MAX, 30, 1), (-3, 0, -3)]:
        assert lib.ta_asr(x, n) == want


def test_load_store_by_hand(lib):
    p = Placed(b"\x01\x02\x03\x04\xff\xff\xff\xff\x00\x00\x00\x80", 1)
    assert lib.ta_load_u32(p.ptr) == 0x04030201
    assert lib.ta_load_i32(p.ptr) == 0x04030201
    p4 = ctypes.c_void_p(p.ptr.value + 4)
    p8 = ctypes.c_void_p(p.ptr.value + 8)
    assert lib.ta_load_u32(p4) == 0xFFFFFFFF
    assert lib.ta_load_i32(p4) == -1
    assert lib.ta_load_i32(p8) == I32_MIN
    assert lib.ta_load_u32(p8) == 0x80000000
    q = Placed(bytes(12), 3)
    lib.ta_store_u32(q.ptr, 0xA1B2C3D4)
    lib.ta_store_i32(ctypes.c_void_p(q.ptr.value + 4), -2)
    lib.ta_store_i32(ctypes.c_void_p(q.ptr.value + 8), I32_MIN)
    assert q.data() == b"\xd4\xc3\xb2\xa1\xfe\xff\xff\xff\x00\x00\x00\x80"
    assert q.guards_intact()
    for u, want in [(0, 0), (0x7FFFFFFF, I32_MAX), (0x80000000, I32_MIN),
                    (0xFFFFFFFF, -1), (0xFFFFFFFE, -2)]:
        assert lib.ta_u32_to_i32(u) == want


def test_xorshift32_by_hand(lib):
    # seed 1: 1 ^ 1<<13 = 0x2001; ^ >>17 unchanged; ^ <<5 (0x40020) = 0x42021
    # then 0x42021 -> 0x84000021 -> 0x84004221 -> 0x04080601
    want = [0x42021, 0x04080601]
    p = Placed(bytes(8), 1)
    final = lib.ta_xorshift32_fill(p.ptr, 2, 1)
    assert final == 0x04080601
    assert list(np.frombuffer(p.data(), "<u4")) == want
    assert p.guards_intact()
    out = bytearray(8)
    assert sim.xorshift32_fill(out, 1) == 0x04080601
    assert list(np.frombuffer(bytes(out), "<u4")) == want


def test_xorshift32_seed_zero_refused_in_c(lib):
    p = Placed(bytes(8), 1)
    assert lib.ta_xorshift32_fill(p.ptr, 2, 0) == 0
    assert p.data() == bytes(8) and p.guards_intact()


def test_fully_connected_by_hand(lib):
    # inp - in_zp (-128): b0 [0, 128, 255], b1 [129, 127, 130]
    # w0 [1, 2, -1] -> sums b0 1, b1 253; w1 [-128, 127, 0] -> 16256, -383
    # + bias [10, -100] -> acc b0 [11, 16156], b1 [263, -483]
    # ch0 mult 0.5 shift 0: 5.5 -> 6, 131.5 -> 132
    # ch1 mult 0.5 shift -7: 8078 / 128 = 63.1 -> 63; -241.5 -> -241, /128 -> -2
    # + out_zp 5 -> b0 [11, 68], b1 [137 -> 127, 3]
    inp = i8_bytes([-128, 0, 127, 1, -1, 2])
    w = i8_bytes([1, 2, -1, -128, 127, 0])
    bias = i32_bytes([10, -100])
    mult = i32_bytes([1 << 30, 1 << 30])
    shift = i32_bytes([0, -7])
    args = (inp, w, bias, mult, shift, 3, 2, -128, 5)
    want = i8_bytes([11, 68, 127, 3])
    assert c_fc(lib, *args, -128, 127) == (TA_OK, want)
    assert sim_fc(*args, -128, 127) == want
    want = i8_bytes([11, 60, 60, 3])
    assert c_fc(lib, *args, 0, 60) == (TA_OK, want)
    assert sim_fc(*args, 0, 60) == want


def test_requantize_by_hand(lib):
    # ch0 mult 0.5 shift -3, ch1 mult MAX shift 0, out_zp -1
    # 1000 -> 500 -> 62.5 -> 63 -> 62; -1000 -> -1000 -> -1001 -> -128
    # 7 -> 3.5 -> 4 -> 0.5 -> 1 -> 0;  -7 -> -7 -> -8
    # MAX -> 2^30 -> 2^27 -> 127;      MIN -> -(2^31 - 1) -> -2^31 -> -128
    inp = i32_bytes([1000, -1000, 7, -7, I32_MAX, I32_MIN])
    mult = i32_bytes([1 << 30, I32_MAX])
    shift = i32_bytes([-3, 0])
    want = i8_bytes([62, -128, 0, -8, 127, -128])
    assert c_requant(lib, inp, mult, shift, -1, -128, 127) == (TA_OK, want)
    assert sim_requant(inp, mult, shift, -1, -128, 127) == want


def test_requantize_zero_point_add_cannot_overflow(lib):
    # requant gives 2147483646 and -2147483647; adding +-127/-128 is exact
    # (a wrapping int32 add would give the wrong sign)
    inp = i32_bytes([I32_MAX, I32_MIN])
    mult = i32_bytes([I32_MAX])
    shift = i32_bytes([30])
    for zp, want in [(127, [127, -128]), (-128, [127, -128])]:
        assert c_requant(lib, inp, mult, shift, zp, -128, 127) == (TA_OK, i8_bytes(want))
        assert sim_requant(inp, mult, shift, zp, -128, 127) == i8_bytes(want)


def test_fully_connected_bias_wraps(lib):
    # bias MAX + sum 1 wraps to MIN; mult MAX shift 0 keeps the sign: -128
    inp, w = i8_bytes([1]), i8_bytes([1])
    args = (inp, w, i32_bytes([I32_MAX]), i32_bytes([I32_MAX]), i32_bytes([0]),
            1, 1, 0, 0, -128, 127)
    assert c_fc(lib, *args) == (TA_OK, i8_bytes([-128]))
    assert sim_fc(*args) == i8_bytes([-128])


# ----------------------------------------- scalar helpers, C vs numpy

def _random_i32(rng, n):
    parts = [
        rng.integers(I32_MIN, I32_MAX + 1, n, dtype=np.int64),
        rng.integers(-1000, 1001, n, dtype=np.int64),
        # +-2^k +- small, both signs
        (rng.choice([-1, 1], n) * (np.int64(1) << rng.integers(0, 31, n))
         + rng.integers(-2, 3, n)),
        np.array(EDGE_I32, dtype=np.int64),
    ]
    return np.clip(np.concatenate(parts), I32_MIN, I32_MAX)


def test_rounding_rshift_random(lib):
    rng = np.random.default_rng(1)
    x = _random_i32(rng, 1500)
    n = rng.integers(0, 32, x.size)
    # exact ties: k * 2^n + 2^(n-1), both signs
    tn = rng.integers(1, 31, 500)
    k = rng.integers(-(1 << 20), 1 << 20, 500) >> np.minimum(tn, 20)
    tx = np.clip(k * (np.int64(1) << tn) + (np.int64(1) << (tn - 1)), I32_MIN, I32_MAX)
    ex = np.repeat(np.array(EDGE_I32, dtype=np.int64), 32)
    en = np.tile(np.arange(32), len(EDGE_I32))
    x, n = np.concatenate([x, tx, ex]), np.concatenate([n, tn, en])
    got = c_map(lib.ta_rounding_rshift, x.tolist(), n.tolist())
    assert np.array_equal(got, fp.rounding_rshift(x, n))


def test_srdhm_random(lib):
    rng = np.random.default_rng(2)
    a = _random_i32(rng, 2000)
    b = _random_i32(rng, 2000)
    b = rng.permutation(b)
    ea = np.repeat(np.array(EDGE_I32, dtype=np.int64), len(EDGE_I32))
    eb = np.tile(np.array(EDGE_I32, dtype=np.int64), len(EDGE_I32))
    # exact ties: a * b = +-2^30 * odd
    ta = rng.choice([-1, 1], 300) * (np.int64(1) << rng.integers(1, 31, 300))
    tb = (np.int64(1) << 30) // np.abs(ta) * (2 * rng.integers(0, 2, 300) + 1)
    a, b = np.concatenate([a, ea, ta]), np.concatenate([b, eb, tb])
    got = c_map(lib.ta_srdhm, a.tolist(), b.tolist())
    assert np.array_equal(got, fp.srdhm(a, b))


def test_mul_by_quantized_mult_random(lib):
    rng = np.random.default_rng(3)
    x = _random_i32(rng, 2000)
    mult = np.concatenate([
        rng.integers(0, I32_MAX + 1, x.size // 2),
        rng.integers(1 << 30, I32_MAX + 1, x.size - x.size // 2)])
    mult = rng.permutation(mult)
    shift = rng.integers(-31, 31, x.size)
    mult[:8] = [0, I32_MAX, 0, I32_MAX, 1, 1 << 30, I32_MAX, 0]
    shift[:8] = [-31, -31, 30, 30, 0, -31, -1, 0]
    ex = np.repeat(np.array(EDGE_I32, dtype=np.int64), 4)
    em = np.tile(np.array([0, 1, 1 << 30, I32_MAX], dtype=np.int64), len(EDGE_I32))
    x, mult = np.concatenate([x, ex, ex]), np.concatenate([mult, em, em])
    shift = np.concatenate([shift, np.full(ex.size, -31), np.full(ex.size, 30)])
    got = c_map(lib.ta_mul_by_quantized_mult, x.tolist(), mult.tolist(), shift.tolist())
    assert np.array_equal(got, fp.mul_by_quantized_mult(x, mult, shift))
    # the module-level function is the same rule behind validation
    for i in range(0, x.size, 97):
        assert sim.mul_by_quantized_mult(int(x[i]), int(mult[i]), int(shift[i])) == got[i]


def test_saturate_random(lib):
    rng = np.random.default_rng(4)
    x = _random_i32(rng, 500)
    lo = rng.integers(I32_MIN, 1, x.size)
    hi = rng.integers(0, I32_MAX + 1, x.size)
    got = c_map(lib.ta_saturate, x.tolist(), lo.tolist(), hi.tolist())
    assert np.array_equal(got, fp.saturate(x, lo, hi))


def test_xorshift32_random_seeds(lib):
    rng = np.random.default_rng(5)
    seeds = [1, 0xFFFFFFFF, 0x80000000, 2463534242] + rng.integers(
        1, 1 << 32, 20).tolist()
    for n_words, seed in zip([0, 1, 7, 64] * 6, seeds):
        p = Placed(bytes(4 * n_words), 3)
        final = lib.ta_xorshift32_fill(p.ptr, n_words, seed)
        assert p.guards_intact()
        out = bytearray(4 * n_words)
        assert sim.xorshift32_fill(out, seed) == final
        assert bytes(out) == p.data()
        if n_words == 0:
            assert final == seed
    # chaining: two calls equal one long call
    a = bytearray(40)
    s = sim.xorshift32_fill(memoryview(a)[:16], 99)
    s = sim.xorshift32_fill(memoryview(a)[16:], s)
    p = Placed(bytes(40), 1)
    assert lib.ta_xorshift32_fill(p.ptr, 10, 99) == s
    assert p.data() == bytes(a)


# --------------------------------------------------- kernels, C vs numpy

def _random_fc(rng, n_batch, n_in, n_out, realistic=True):
    inp = rng.integers(-128, 128, n_batch * n_in)
    w = rng.integers(-128, 128, n_out * n_in)
    if realistic:
        # scales that keep most outputs inside int8, so clamping is not all
        # that is tested
        bias = rng.integers(-20000, 20001, n_out)
        mult = rng.integers(1 << 30, I32_MAX + 1, n_out)
        shift = rng.integers(-16, -6, n_out)
    else:
        bias = rng.integers(I32_MIN, I32_MAX + 1, n_out)
        mult = rng.integers(0, I32_MAX + 1, n_out)
        shift = rng.integers(-31, 31, n_out)
    zp = rng.integers(-128, 128, 2)
    lo, hi = sorted(rng.integers(-128, 128, 2))
    if rng.random() < 0.5:
        lo, hi = -128, 127
    return (i8_bytes(inp), i8_bytes(w), i32_bytes(bias), i32_bytes(mult),
            i32_bytes(shift), n_in, n_out, int(zp[0]), int(zp[1]), int(lo), int(hi))


@pytest.mark.parametrize("realistic", [True, False])
def test_fully_connected_random(lib, realistic):
    rng = np.random.default_rng(10 + realistic)
    shapes = [(1, 1, 1), (1, 1, 7), (3, 1, 2), (1, 7, 1), (2, 5, 3), (4, 33, 9),
              (5, 64, 10), (1, 129, 3), (7, 3, 17), (2, 255, 1)]
    shapes += [tuple(int(v) for v in rng.integers(1, (6, 80, 20))) for _ in range(40)]
    distinct = set()
    for n_batch, n_in, n_out in shapes:
        args = _random_fc(rng, n_batch, n_in, n_out, realistic)
        st, got = c_fc(lib, *args)
        assert st == TA_OK
        assert got == sim_fc(*args), (n_batch, n_in, n_out)
        distinct.update(got)
    if realistic:  # outputs span the int8 range, not just the clamps
        assert len(distinct) > 100


def test_fully_connected_extremes(lib):
    # n_in = 65535 with every term at its extreme; acc * 0.5 / 2^24:
    #  (-128 - 127) * -128 = 32640:  65535 * 32640 = 2139062400 -> 63.75 -> 64
    #  (-128 - 127) * 127 = -32385: -2122350975 -> srdhm -1061175487.5 rounds
    #     to -1061175487, / 2^24 = -63.25 -> -63
    #  (127 + 128) * -128 = -32640: -2139062400 -> -63.75 -> -64
    n_in = 65535
    for inp_v, w_v, in_zp, want in [(-128, -128, 127, 64), (-128, 127, 127, -63),
                                    (127, -128, -128, -64)]:
        args = (i8_bytes([inp_v] * n_in), i8_bytes([w_v] * n_in),
                i32_bytes([0]), i32_bytes([1 << 30]), i32_bytes([-24]), n_in, 1,
                in_zp, 0, -128, 127)
        st, got = c_fc(lib, *args)
        assert st == TA_OK
        assert got == i8_bytes([want])
        assert sim_fc(*args) == i8_bytes([want])


def test_fully_connected_zero_points_and_clamps(lib):
    rng = np.random.default_rng(12)
    for in_zp in (-128, 127, 0):
        for out_zp in (-128, 127, 0):
            for lo, hi in [(-128, 127), (0, 127), (-128, -128), (127, 127), (-5, 5)]:
                args = list(_random_fc(rng, 3, 9, 5))
                args[7:11] = [in_zp, out_zp, lo, hi]
                st, got = c_fc(lib, *args)
                assert st == TA_OK
                assert got == sim_fc(*args)
                vals = np.frombuffer(got, np.int8)
                assert vals.min() >= lo and vals.max() <= hi


def test_fully_connected_mult_and_shift_extremes(lib):
    rng = np.random.default_rng(13)
    for mult in (0, 1, I32_MAX):
        for shift in (-31, 30, 0):
            args = list(_random_fc(rng, 2, 5, 4, realistic=False))
            args[3] = i32_bytes([mult] * 4)
            args[4] = i32_bytes([shift] * 4)
            st, got = c_fc(lib, *args)
            assert st == TA_OK
            assert got == sim_fc(*args)


def test_requantize_random(lib):
    rng = np.random.default_rng(20)
    for n_ch in (1, 2, 3, 7, 16):
        for count in (0, 1, 5, 33):
            n = count * n_ch
            inp = np.concatenate([rng.integers(I32_MIN, I32_MAX + 1, n // 2),
                                  rng.integers(-100000, 100001, n - n // 2)])
            inp[:min(n, len(EDGE_I32))] = EDGE_I32[:min(n, len(EDGE_I32))]
            mult = rng.integers(0, I32_MAX + 1, n_ch)
            shift = rng.integers(-31, 31, n_ch)
            if n_ch >= 3:
                mult[:3] = [0, I32_MAX, 1 << 30]
                shift[:3] = [-31, 30, -10]
            for out_zp, lo, hi in [(0, -128, 127), (-128, -128, 127), (127, -3, 100)]:
                args = (i32_bytes(inp), i32_bytes(mult), i32_bytes(shift), out_zp, lo, hi)
                st, got = c_requant(lib, *args)
                assert st == TA_OK
                assert got == sim_requant(*args)


def test_requantize_in_place(lib):
    # out aliases the start of inp: safe in C (see ta_kernels.h); the numpy
    # side computes before writing, so both agree
    rng = np.random.default_rng(21)
    inp = i32_bytes(rng.integers(-5000, 5000, 12))
    mult, shift = i32_bytes([1 << 30, 1 << 31 - 1]), i32_bytes([-4, -6])
    want = sim_requant(inp, mult, shift, 3, -128, 127)
    p = Placed(inp, 1)
    m, s = Placed(mult, 2), Placed(shift, 3)
    assert lib.ta_requantize(p.ptr, p.ptr, m.ptr, s.ptr, 12, 2, 3, -128, 127) == TA_OK
    assert p.data()[:12] == want
    buf = bytearray(inp)
    sim.requantize(memoryview(buf)[:12], buf, mult, shift, 3, -128, 127)
    assert bytes(buf[:12]) == want


# ----------------------------------------------- C status codes (defensive)

def _fc_ok_args():
    return [i8_bytes([1, 2, 3, 4]), i8_bytes([1, 1, 1, 1]), i32_bytes([0, 0]),
            i32_bytes([1 << 30] * 2), i32_bytes([0, 0]), 2, 2, 0, 0, -128, 127]


@pytest.mark.parametrize("index,value,n_batch,status", [
    (5, 0, None, TA_ERR_DIM), (5, 65536, None, TA_ERR_DIM), (6, 0, None, TA_ERR_DIM),
    (6, 65536, 2, TA_ERR_DIM), (None, None, 0, TA_ERR_DIM),
    (7, -129, None, TA_ERR_RANGE), (8, 128, None, TA_ERR_RANGE),
    (9, -129, None, TA_ERR_RANGE), (10, 128, None, TA_ERR_RANGE),
    (9, 5, None, TA_ERR_ACT),
    (4, i32_bytes([0, 31]), None, TA_ERR_SHIFT), (4, i32_bytes([-32, 0]), None, TA_ERR_SHIFT),
    (3, i32_bytes([5, -1]), None, TA_ERR_MULT),
])
def test_fully_connected_status(lib, index, value, n_batch, status):
    args = _fc_ok_args()
    if index is not None:
        args[index] = value
    if index == 9:
        args[10] = 4
    nb = 2 if n_batch is None else n_batch
    st, got = c_fc(lib, *args, n_batch=nb)
    assert st == status
    assert got == b"\x77" * len(got)  # nothing written


def test_fully_connected_null(lib):
    args = _fc_ok_args()
    bufs = [Placed(a) for a in args[:5]]
    out = Placed(bytes(4))
    ptrs = [out.ptr] + [b.ptr for b in bufs]
    for k in range(6):
        p = list(ptrs)
        p[k] = None
        assert lib.ta_fully_connected(*p, 2, 2, 2, 0, 0, -128, 127) == TA_ERR_NULL
    assert out.data() == bytes(4)


@pytest.mark.parametrize("kw,status", [
    (dict(n=-1), TA_ERR_DIM), (dict(n_ch=0), TA_ERR_DIM),
    (dict(out_zp=128), TA_ERR_RANGE), (dict(act_min=-129), TA_ERR_RANGE),
    (dict(act_max=128), TA_ERR_RANGE), (dict(act_min=3, act_max=2), TA_ERR_ACT),
    (dict(shift=i32_bytes([0, 31])), TA_ERR_SHIFT),
    (dict(shift=i32_bytes([-32, 0]), mult=i32_bytes([-1, 0])), TA_ERR_SHIFT),
    (dict(mult=i32_bytes([0, I32_MIN])), TA_ERR_MULT),
])
def test_requantize_status(lib, kw, status):
    a = dict(inp=i32_bytes([1, 2, 3, 4]), mult=i32_bytes([1 << 30] * 2),
             shift=i32_bytes([0, 0]), out_zp=0, act_min=-128, act_max=127, n=4, n_ch=2)
    a.update(kw)
    inp = a.pop("inp")
    mult = a.pop("mult")
    shift = a.pop("shift")
    st, got = c_requant(lib, inp, mult, shift, **a)
    assert st == status
    assert got == b"\x77" * len(got)


# ----------------------------------------------------------- sanitizers

def _sanitizer_env():
    env = dict(os.environ)
    libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"],
                             capture_output=True, text=True).stdout.strip()
    require(os.path.isabs(libasan) and os.path.exists(libasan), "libasan for the host gcc",
            "sudo apt-get install libgcc-12-dev (it ships with gcc)")
    env["LD_PRELOAD"] = libasan
    env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0:exitcode=86"
    env["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1:exitcode=87"
    env["TA_HOSTLIB_SANITIZE"] = "1"
    return env


@pytest.mark.skipif(SANITIZE, reason="already the sanitized run")
def test_sanitizers(tmp_path):
    """Run this whole module against the UBSan+ASan build: the C code must
    not rely on signed overflow, shifts of negatives, misaligned loads or
    out-of-bounds access."""
    build_hostlib.build(_lib_path(True), sanitize=True)
    env = _sanitizer_env()

    # the harness must be able to fail: a deliberate signed overflow aborts
    probe_c = tmp_path / "probe.c"
    probe_c.write_text("int probe(int x) { return x + 1; }\n")
    probe = tmp_path / "probe.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(probe), str(probe_c)]
                   + build_hostlib.SANITIZE_FLAGS, check=True)
    bad = subprocess.run(
        [sys.executable, "-c",
         "import ctypes; ctypes.CDLL(%r).probe(2147483647)" % str(probe)],
        env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "runtime error" in bad.stderr

    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
         os.path.abspath(__file__)],
        env=env, capture_output=True, text=True, cwd=ROOT, timeout=600)
    report = res.stdout[-3000:] + res.stderr[-3000:]
    assert res.returncode == 0, report
    assert "runtime error" not in res.stderr, report
    assert "AddressSanitizer" not in res.stderr, report
    assert " passed" in res.stdout, report
