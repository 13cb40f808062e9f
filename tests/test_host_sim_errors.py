"""Every error row of docs/kernels.md, for every function of host_sim's
`_tinyadapt`: exception type, exact text, check order, and that the output
buffer is untouched when a call is refused."""

import array
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "host_sim"))

import _tinyadapt as ta  # noqa: E402

I32_MIN = -(1 << 31)
I32_MAX = (1 << 31) - 1
SENTINEL = 0x5A


def raises(exc, message, func, *args):
    with pytest.raises(exc) as info:
        func(*args)
    assert type(info.value) is exc
    if message is not None:
        assert str(info.value) == message
    return info.value


def i32(values):
    return array.array("i", values)


# ------------------------------------------------------------ fully_connected

FC_NAMES = ["out", "inp", "weights", "bias", "mult", "shift", "n_in", "n_out",
            "in_zp", "out_zp", "act_min", "act_max"]
FC_KINDS = {"out": "int8", "inp": "int8", "weights": "int8", "bias": "int32",
            "mult": "int32", "shift": "int32"}


def fc_args(**kw):
    """A valid call: batch 2, n_in 3, n_out 2; override by name."""
    a = dict(out=bytearray([SENTINEL] * 4), inp=bytes(6), weights=bytes(6),
             bias=bytes(8), mult=i32([1 << 30, 1 << 30]), shift=i32([0, -1]),
             n_in=3, n_out=2, in_zp=0, out_zp=0, act_min=-128, act_max=127)
    a.update(kw)
    return a


def call_fc(a):
    return ta.fully_connected(*[a[n] for n in FC_NAMES])


def fc_raises(exc, message, **kw):
    a = fc_args(**kw)
    out = a["out"]
    before = bytes(out) if isinstance(out, bytearray) else None
    raises(exc, message, call_fc, a)
    if before is not None:
        assert bytes(out) == before, "output touched before the error"


def test_fc_valid_call_baseline():
    a = fc_args()
    assert call_fc(a) is None
    assert bytes(a["out"]) == bytes(4)


NOT_BUFFERS = [5, 1.5, None, "abc", [1, 2, 3], (1,), object()]


@pytest.mark.parametrize("name", list(FC_KINDS))
@pytest.mark.parametrize("obj", NOT_BUFFERS, ids=lambda o: type(o).__name__)
def test_fc_not_a_buffer(name, obj):
    fc_raises(TypeError, "%s: expected a buffer" % name, **{name: obj})


@pytest.mark.parametrize("name", list(FC_KINDS))
def test_fc_non_contiguous_buffer(name):
    strided = np.zeros(16, dtype=np.int8)[::2] if FC_KINDS[name] == "int8" \
        else np.zeros(8, dtype=np.int32)[::2]
    fc_raises(TypeError, "%s: expected a buffer" % name, **{name: strided})


@pytest.mark.parametrize("name", list(FC_KINDS))
def test_fc_wrong_typecode(name):
    kind = FC_KINDS[name]
    msg = "%s: expected %s buffer" % (name, kind)
    wrong = [array.array("h", [0] * 4), array.array("f", [0] * 2),
             array.array("d", [0]), np.zeros(2, dtype=np.int64),
             np.zeros(2, dtype=np.float32), np.zeros(8, dtype=bool)]
    if kind == "int8":
        wrong += [array.array("i", [0] * 2), array.array("I", [0] * 2),
                  np.zeros(2, dtype=np.int32)]
    else:
        wrong += [array.array("I", [0] * 2), np.zeros(2, dtype=np.uint32),
                  np.zeros(2, dtype=">i4")]
    for obj in wrong:
        fc_raises(TypeError, msg, **{name: obj})


def test_fc_out_read_only():
    fc_raises(TypeError, "out: buffer is read-only", out=bytes(4))
    fc_raises(TypeError, "out: buffer is read-only",
              out=memoryview(bytearray(4)).toreadonly())
    ro = np.zeros(4, dtype=np.int8)
    ro.flags.writeable = False
    fc_raises(TypeError, "out: buffer is read-only", out=ro)


@pytest.mark.parametrize("name", ["bias", "mult", "shift"])
@pytest.mark.parametrize("n", [1, 2, 3, 7, 9])
def test_fc_raw_int32_not_multiple_of_4(name, n):
    fc_raises(ValueError, "%s: size %d bytes is not a multiple of 4" % (name, n),
              **{name: bytearray(n)})


@pytest.mark.parametrize("name,bad", [
    ("n_in", 0), ("n_in", -1), ("n_in", 65536), ("n_out", 0), ("n_out", 65536),
    ("in_zp", -129), ("in_zp", 128), ("out_zp", -129), ("out_zp", 128),
    ("act_min", -129), ("act_min", 128), ("act_max", -129), ("act_max", 128),
    ("n_in", 1 << 70), ("act_max", -(1 << 70)),
])
def test_fc_scalar_out_of_range(name, bad):
    fc_raises(ValueError, "%s out of range" % name, **{name: bad})


@pytest.mark.parametrize("name", FC_NAMES[6:])
@pytest.mark.parametrize("bad", [1.0, "1", None, b"\x01", 2 + 0j])
def test_fc_scalar_not_int(name, bad):
    fc_raises(TypeError, None, **{name: bad})


def test_fc_act_min_gt_act_max():
    fc_raises(ValueError, "act_min > act_max", act_min=1, act_max=0)
    fc_raises(ValueError, "act_min > act_max", act_min=127, act_max=-128)
    a = fc_args(act_min=5, act_max=5)  # equal is fine
    call_fc(a)


def test_fc_sizes():
    fc_raises(ValueError, "weights: size 5 bytes, expected 6", weights=bytes(5))
    fc_raises(ValueError, "weights: size 0 bytes, expected 6", weights=b"")
    fc_raises(ValueError, "bias: size 12 bytes, expected 8", bias=bytes(12))
    fc_raises(ValueError, "bias: size 4 bytes, expected 8", bias=i32([0]))
    fc_raises(ValueError, "mult: size 12 bytes, expected 8", mult=i32([1, 1, 1]))
    fc_raises(ValueError, "shift: size 4 bytes, expected 8", shift=bytes(4))
    fc_raises(ValueError, "inp: size 7 bytes, expected a nonzero multiple of 3",
              inp=bytes(7))
    fc_raises(ValueError, "inp: size 0 bytes, expected a nonzero multiple of 3",
              inp=b"")
    fc_raises(ValueError, "out: size 3 bytes, expected 4", out=bytearray(3))
    fc_raises(ValueError, "out: size 6 bytes, expected 4", out=bytearray(6))
    # the batch comes from inp: 3 rows need 6 output bytes
    fc_raises(ValueError, "out: size 4 bytes, expected 6", inp=bytes(9))


def test_fc_shift_elements():
    for bad in (-32, 31, I32_MIN, I32_MAX):
        fc_raises(ValueError, "shift out of range", shift=i32([0, bad]))
    fc_raises(ValueError, "shift out of range",
              shift=np.array([-32, 0], dtype="<i4").tobytes())
    call_fc(fc_args(shift=i32([-31, 30])))


def test_fc_mult_elements():
    for bad in (-1, I32_MIN):
        fc_raises(ValueError, "mult out of range", mult=i32([bad, 0]))
    fc_raises(ValueError, "mult out of range",
              mult=np.array([0, -5], dtype="<i4").tobytes())
    call_fc(fc_args(mult=i32([0, I32_MAX])))


def test_fc_check_order():
    # buffers in argument order
    fc_raises(TypeError, "out: expected a buffer", out=None, inp=None)
    fc_raises(TypeError, "inp: expected a buffer", inp=None, weights=array.array("h"))
    fc_raises(TypeError, "weights: expected int8 buffer",
              weights=array.array("h", [0] * 3), bias=5)
    # per buffer: typecode before read-only, read-only before the size rules
    ro_i32 = np.zeros(1, np.int32)
    ro_i32.flags.writeable = False
    fc_raises(TypeError, "out: expected int8 buffer", out=ro_i32)
    fc_raises(TypeError, "out: buffer is read-only", out=bytes(3))
    ro_raw = memoryview(bytes(3))
    fc_raises(TypeError, "inp: expected a buffer", out=bytearray(1), inp=None)
    fc_raises(TypeError, "out: buffer is read-only", out=ro_raw, inp=None)
    fc_raises(ValueError, "bias: size 3 bytes is not a multiple of 4",
              bias=bytes(3), mult=None)
    # every buffer check before scalars
    fc_raises(TypeError, "shift: expected a buffer", shift=None, n_in=0)
    fc_raises(ValueError, "shift: size 1 bytes is not a multiple of 4",
              shift=bytes(1), n_in=1.5)
    # scalars in argument order, type and range together
    fc_raises(TypeError, None, n_in=1.5, n_out=0)
    fc_raises(ValueError, "n_in out of range", n_in=0, n_out=1.5)
    fc_raises(ValueError, "n_out out of range", n_out=0, in_zp=500)
    fc_raises(ValueError, "in_zp out of range", in_zp=500, out_zp=500)
    fc_raises(ValueError, "out_zp out of range", out_zp=500, act_min=500)
    fc_raises(ValueError, "act_min out of range", act_min=500, act_max=500)
    # scalars before act_min <= act_max, which comes before the sizes
    fc_raises(ValueError, "act_max out of range", act_min=5, act_max=500)
    fc_raises(ValueError, "act_min > act_max", act_min=5, act_max=4, weights=b"")
    # sizes: weights, bias, mult, shift, inp, out
    fc_raises(ValueError, "weights: size 1 bytes, expected 6", weights=b"x",
              bias=bytes(4), out=bytearray(1))
    fc_raises(ValueError, "bias: size 4 bytes, expected 8", bias=bytes(4),
              mult=bytes(4))
    fc_raises(ValueError, "mult: size 4 bytes, expected 8", mult=bytes(4),
              shift=bytes(4))
    fc_raises(ValueError, "shift: size 4 bytes, expected 8", shift=bytes(4),
              inp=bytes(5))
    fc_raises(ValueError, "inp: size 5 bytes, expected a nonzero multiple of 3",
              inp=bytes(5), out=bytearray(1))
    # sizes before element checks; shift elements before mult elements
    fc_raises(ValueError, "out: size 1 bytes, expected 4", out=bytearray(1),
              shift=i32([99, 0]))
    fc_raises(ValueError, "shift out of range", shift=i32([99, 0]), mult=i32([-1, 0]))
    fc_raises(ValueError, "mult out of range", mult=i32([0, -1]))


def test_fc_accepted_buffers():
    # every accepted buffer kind, unaligned raw slices included
    raw = bytearray(1 + 8 * 3)
    mv = memoryview(raw)
    bias = mv[1:9]
    mult = mv[9:17]
    shift = mv[17:25]
    mult[:] = np.array([1 << 30, 1 << 30], "<i4").tobytes()
    inputs = [
        dict(),
        dict(out=array.array("b", [0] * 4), inp=array.array("B", [0] * 6)),
        dict(out=np.zeros((2, 2), np.int8), inp=np.zeros((2, 3), np.uint8),
             weights=np.zeros((2, 3), np.int8)),
        dict(bias=bias, mult=mult, shift=shift),
        dict(bias=np.zeros(2, np.int32), mult=np.full(2, 5, np.int32),
             shift=np.zeros((1, 2), np.int32)),
        dict(out=memoryview(bytearray(6))[1:5]),
        dict(n_in=np.int64(3), n_out=np.uint8(2), act_min=True, act_max=True),
    ]
    for kw in inputs:
        call_fc(fc_args(**kw))


# -------------------------------------------------------------- requantize

RQ_NAMES = ["out", "inp", "mult", "shift", "out_zp", "act_min", "act_max"]
RQ_KINDS = {"out": "int8", "inp": "int32", "mult": "int32", "shift": "int32"}


def rq_args(**kw):
    """A valid call: 3 rows of C = 2 channels."""
    a = dict(out=bytearray([SENTINEL] * 6), inp=i32([1, 2, 3, 4, 5, 6]),
             mult=i32([1 << 30, 1 << 30]), shift=bytes(8), out_zp=0,
             act_min=-128, act_max=127)
    a.update(kw)
    return a


def rq_raises(exc, message, **kw):
    a = rq_args(**kw)
    out = a["out"]
    before = bytes(out) if isinstance(out, bytearray) else None
    raises(exc, message, ta.requantize, *[a[n] for n in RQ_NAMES])
    if before is not None:
        assert bytes(out) == before, "output touched before the error"


def test_rq_valid_call_baseline():
    a = rq_args()
    assert ta.requantize(*[a[n] for n in RQ_NAMES]) is None
    assert bytes(a["out"]) == bytes([1, 1, 2, 2, 3, 3])  # 0.5, 1.5, ... rounded


@pytest.mark.parametrize("name", list(RQ_KINDS))
@pytest.mark.parametrize("obj", NOT_BUFFERS, ids=lambda o: type(o).__name__)
def test_rq_not_a_buffer(name, obj):
    rq_raises(TypeError, "%s: expected a buffer" % name, **{name: obj})


@pytest.mark.parametrize("name", list(RQ_KINDS))
def test_rq_non_contiguous_and_typecode(name):
    kind = RQ_KINDS[name]
    strided = np.zeros(24, np.int8)[::2] if kind == "int8" else np.zeros(12, np.int32)[::2]
    rq_raises(TypeError, "%s: expected a buffer" % name, **{name: strided})
    wrong = [array.array("h", [0] * 3), array.array("q", [0]), np.zeros(6, np.float64)]
    wrong += [array.array("i", [0] * 6)] if kind == "int8" else [array.array("I", [0] * 2)]
    for obj in wrong:
        rq_raises(TypeError, "%s: expected %s buffer" % (name, kind), **{name: obj})


def test_rq_read_only_and_multiple_of_4():
    rq_raises(TypeError, "out: buffer is read-only", out=bytes(6))
    for name in ("inp", "mult", "shift"):
        rq_raises(ValueError, "%s: size 5 bytes is not a multiple of 4" % name,
                  **{name: bytes(5)})


@pytest.mark.parametrize("name,bad", [
    ("out_zp", -129), ("out_zp", 128), ("act_min", -129), ("act_min", 128),
    ("act_max", -129), ("act_max", 128), ("out_zp", 1 << 40)])
def test_rq_scalar_out_of_range(name, bad):
    rq_raises(ValueError, "%s out of range" % name, **{name: bad})


@pytest.mark.parametrize("name", RQ_NAMES[4:])
@pytest.mark.parametrize("bad", [0.0, "0", None])
def test_rq_scalar_not_int(name, bad):
    rq_raises(TypeError, None, **{name: bad})


def test_rq_act_and_sizes_and_elements():
    rq_raises(ValueError, "act_min > act_max", act_min=0, act_max=-1)
    rq_raises(ValueError, "mult: size 0 bytes, expected a nonzero multiple of 4",
              mult=b"", shift=b"")
    rq_raises(ValueError, "shift: size 4 bytes, expected 8", shift=bytes(4))
    rq_raises(ValueError, "shift: size 12 bytes, expected 8", shift=i32([0, 0, 0]))
    rq_raises(ValueError, "inp: size 20 bytes, expected a multiple of 8",
              inp=i32([1, 2, 3, 4, 5]))
    rq_raises(ValueError, "out: size 5 bytes, expected 6", out=bytearray(5))
    rq_raises(ValueError, "out: size 1 bytes, expected 0", inp=b"", out=bytearray(1))
    rq_raises(ValueError, "shift out of range", shift=i32([0, 31]))
    rq_raises(ValueError, "shift out of range", shift=i32([-32, 0]))
    rq_raises(ValueError, "mult out of range", mult=i32([1, -1]))
    # an empty input with an empty output is a valid no-op
    ta.requantize(bytearray(0), b"", i32([1]), i32([0]), 0, -128, 127)


def test_rq_check_order():
    rq_raises(TypeError, "out: expected a buffer", out=1, inp=1)
    rq_raises(TypeError, "inp: expected int32 buffer", inp=array.array("h"), mult=1)
    rq_raises(ValueError, "inp: size 3 bytes is not a multiple of 4", inp=bytes(3),
              mult=None)
    rq_raises(TypeError, "shift: expected a buffer", shift=None, out_zp=1000)
    rq_raises(ValueError, "out_zp out of range", out_zp=1000, act_min=0.5)
    rq_raises(TypeError, None, act_min=0.5, act_max=1000)
    rq_raises(ValueError, "act_min > act_max", act_min=1, act_max=0, mult=b"")
    rq_raises(ValueError, "mult: size 0 bytes, expected a nonzero multiple of 4",
              mult=b"", shift=bytes(4))
    rq_raises(ValueError, "shift: size 4 bytes, expected 8", shift=bytes(4),
              inp=bytes(4))
    rq_raises(ValueError, "inp: size 4 bytes, expected a multiple of 8", inp=bytes(4),
              out=bytearray(1))
    rq_raises(ValueError, "out: size 1 bytes, expected 6", out=bytearray(1),
              shift=i32([40, 0]))
    rq_raises(ValueError, "shift out of range", shift=i32([40, 0]), mult=i32([-1, 0]))


# ----------------------------------------------------------- scalar functions

SCALAR_CASES = [
    # function, valid args, [(arg index, name, out-of-range values)]
    (ta.rounding_rshift, (5, 1), [(0, "x", [I32_MAX + 1, I32_MIN - 1, 1 << 64]),
                                  (1, "n", [-1, 32])]),
    (ta.srdhm, (5, 7), [(0, "a", [I32_MAX + 1, I32_MIN - 1]),
                        (1, "b", [I32_MAX + 1, I32_MIN - 1])]),
    (ta.mul_by_quantized_mult, (5, 1 << 30, 0), [
        (0, "x", [I32_MAX + 1, I32_MIN - 1]),
        (1, "mult", [-1, I32_MIN, I32_MAX + 1]),
        (2, "shift", [-32, 31])]),
    (ta.saturate, (5, -3, 3), [(0, "x", [I32_MAX + 1, I32_MIN - 1]),
                               (1, "lo", [I32_MAX + 1, I32_MIN - 1]),
                               (2, "hi", [I32_MAX + 1, I32_MIN - 1])]),
]


@pytest.mark.parametrize("func,valid,rows", SCALAR_CASES,
                         ids=[c[0].__name__ for c in SCALAR_CASES])
def test_scalar_functions_ranges_and_types(func, valid, rows):
    assert isinstance(func(*valid), int)
    for index, name, bads in rows:
        for bad in bads:
            args = list(valid)
            args[index] = bad
            raises(ValueError, "%s out of range" % name, func, *args)
        for bad in (1.0, "1", None, [1]):
            args = list(valid)
            args[index] = bad
            raises(TypeError, None, func, *args)
    # argument order: the first bad argument is reported
    args = [I32_MAX + 10] * len(valid)
    raises(ValueError, "%s out of range" % rows[0][1], func, *args)
    args = [1.5] + [I32_MAX + 10] * (len(valid) - 1)
    raises(TypeError, None, func, *args)


def test_scalar_boundaries_accepted():
    assert ta.rounding_rshift(I32_MIN, 31) == -1
    assert ta.rounding_rshift(I32_MAX, 0) == I32_MAX
    assert ta.srdhm(I32_MIN, I32_MIN) == I32_MAX
    assert ta.mul_by_quantized_mult(I32_MIN, 0, -31) == 0
    assert ta.mul_by_quantized_mult(I32_MAX, I32_MAX, 30) == 2147483646
    assert ta.saturate(I32_MIN, I32_MIN, I32_MAX) == I32_MIN
    assert ta.saturate(7, 7, 7) == 7
    assert ta.rounding_rshift(True, False) == 1  # bools are ints (as on MicroPython)
    assert ta.srdhm(np.int32(1 << 30), np.int64(1)) == 1


def test_saturate_lo_gt_hi():
    raises(ValueError, "lo > hi", ta.saturate, 0, 1, 0)
    raises(ValueError, "lo > hi", ta.saturate, 0, I32_MAX, I32_MIN)
    # range of each argument is checked before lo <= hi
    raises(ValueError, "hi out of range", ta.saturate, 0, 1, I32_MIN - 1)


# ----------------------------------------------------------- xorshift32_fill

def xs_raises(exc, message, out, seed):
    before = bytes(out) if isinstance(out, bytearray) else None
    raises(exc, message, ta.xorshift32_fill, out, seed)
    if before is not None:
        assert bytes(out) == before


def test_xorshift32_fill_errors():
    for obj in NOT_BUFFERS:
        xs_raises(TypeError, "out: expected a buffer", obj, 1)
    xs_raises(TypeError, "out: expected a buffer", np.zeros(8, np.uint32)[::2], 1)
    for obj in (array.array("i", [0]), array.array("h", [0, 0]), np.zeros(1, np.int32),
                np.zeros(1, np.uint64), np.zeros(1, ">u4"), np.zeros(1, np.float32)):
        xs_raises(TypeError, "out: expected uint32 buffer", obj, 1)
    xs_raises(TypeError, "out: buffer is read-only", bytes(8), 1)
    for n in (1, 2, 3, 5, 7):
        xs_raises(ValueError, "out: size %d bytes is not a multiple of 4" % n,
                  bytearray([SENTINEL] * n), 1)
    for seed in (0, -1, 1 << 32, -(1 << 31)):
        xs_raises(ValueError, "seed out of range", bytearray([SENTINEL] * 8), seed)
    for seed in (1.0, "1", None):
        xs_raises(TypeError, None, bytearray([SENTINEL] * 8), seed)
    # order: the buffer before the seed
    xs_raises(TypeError, "out: buffer is read-only", bytes(4), 0)
    xs_raises(ValueError, "out: size 3 bytes is not a multiple of 4", bytearray(3), 0)


def test_xorshift32_fill_accepted():
    assert ta.xorshift32_fill(bytearray(0), 7) == 7
    assert ta.xorshift32_fill(array.array("I", [0] * 3), 0xFFFFFFFF) > 0
    assert ta.xorshift32_fill(np.zeros((2, 2), np.uint32), 1) > 0
    assert ta.xorshift32_fill(memoryview(bytearray(9))[1:9], 1) > 0
