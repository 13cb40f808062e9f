"""add, softmax and argmax: TFLite int8 element-wise add, int8 softmax over
the last axis and argmax over the last axis, bit-exact with
natmod/ta_eltwise.c."""

import numpy as np

from . import fixedpoint as _fp
from .bufcheck import (
    I32_MAX,
    I32_MIN,
    INT8,
    INT32,
    buffer_arg,
    check_act,
    check_size,
    check_size_multiple,
    int_arg,
)
from .geometry import DIM_MAX, I31_MAX

_I8_LO, _I8_HI = -128, 127
ADD_LEFT_SHIFT = 20
SOFTMAX_N_MAX = 511


def add(out, in1, in2, in1_zp, in1_mult, in1_shift, in2_zp, in2_mult, in2_shift, out_zp,
        out_mult, out_shift, act_min, act_max):
    """TFLite int8 ADD (no broadcasting), left_shift 20, M = requant:
    out = clamp(M(M((in1 - in1_zp) << 20, in1_mult, in1_shift)
                  + M((in2 - in2_zp) << 20, in2_mult, in2_shift),
                  out_mult, out_shift) + out_zp, act_min, act_max)."""
    out = buffer_arg("out", out, INT8, writable=True)
    in1 = buffer_arg("in1", in1, INT8)
    in2 = buffer_arg("in2", in2, INT8)
    in1_zp = int_arg("in1_zp", in1_zp, _I8_LO, _I8_HI)
    in1_mult = int_arg("in1_mult", in1_mult, 0, I32_MAX)
    in1_shift = int_arg("in1_shift", in1_shift, -31, 0)
    in2_zp = int_arg("in2_zp", in2_zp, _I8_LO, _I8_HI)
    in2_mult = int_arg("in2_mult", in2_mult, 0, I32_MAX)
    in2_shift = int_arg("in2_shift", in2_shift, -31, 0)
    out_zp = int_arg("out_zp", out_zp, _I8_LO, _I8_HI)
    out_mult = int_arg("out_mult", out_mult, 0, I32_MAX)
    out_shift = int_arg("out_shift", out_shift, -31, 0)
    act_min = int_arg("act_min", act_min, _I8_LO, _I8_HI)
    act_max = int_arg("act_max", act_max, _I8_LO, _I8_HI)
    check_act(act_min, act_max)
    check_size(in2, in1.nbytes)
    check_size(out, in1.nbytes)
    if in1.nbytes > I31_MAX:
        raise ValueError("in1 too large")

    if in1.nbytes == 0:
        return
    a = (in1.arr.astype(np.int64) - in1_zp) << ADD_LEFT_SHIFT
    b = (in2.arr.astype(np.int64) - in2_zp) << ADD_LEFT_SHIFT
    a = _fp.mul_by_quantized_mult(a, in1_mult, in1_shift)
    b = _fp.mul_by_quantized_mult(b, in2_mult, in2_shift)
    out.arr[:] = _fp.requant_to_i8(a + b, out_mult, out_shift, out_zp, act_min, act_max)


def softmax(out, inp, n, input_multiplier, input_left_shift, diff_min):
    """TFLite Micro int8 softmax over rows of n values, output zero point
    -128 and scale 1/256; the integer steps are in natmod/ta_kernels.h."""
    out = buffer_arg("out", out, INT8, writable=True)
    inp = buffer_arg("inp", inp, INT8)
    n = int_arg("n", n, 1, SOFTMAX_N_MAX)
    input_multiplier = int_arg("input_multiplier", input_multiplier, 0, I32_MAX)
    input_left_shift = int_arg("input_left_shift", input_left_shift, 0, 31)
    diff_min = int_arg("diff_min", diff_min, I32_MIN, 0)
    check_size_multiple(inp, n, nonzero=True)
    check_size(out, inp.nbytes)
    if inp.nbytes > I31_MAX:
        raise ValueError("inp too large")

    rows = inp.nbytes // n
    x = inp.arr.astype(np.int64).reshape(rows, n)
    diff = x - np.maximum(x.max(axis=1, keepdims=True), -128)
    counted = diff >= diff_min
    e = _fp.exp_on_negative_values_q5(
        _fp.mul_by_quantized_mult_gt1(diff, input_multiplier, input_left_shift))
    # Q12.19 sum: n <= 511 terms of at most 2^19, exact
    total = np.where(counted, _fp.rounding_rshift(e, 12), 0).sum(axis=1)
    recip, bits = _fp.get_reciprocal(total, 12)
    exponent = bits + 31 - 8
    v = _fp.rounding_rshift(_fp.srdhm(recip[:, None], e), exponent[:, None]) - 128
    v = np.where(counted, _fp.saturate(v, -128, 127), -128)
    out.arr[:] = v.astype(np.int8).reshape(-1)


def argmax(out, inp, n):
    """out[r] = index of the largest of the n int8 values of row r (ties:
    the lowest index), int32."""
    out = buffer_arg("out", out, INT32, writable=True)
    inp = buffer_arg("inp", inp, INT8)
    n = int_arg("n", n, 1, DIM_MAX)
    check_size_multiple(inp, n, nonzero=True)
    rows = inp.nbytes // n
    check_size(out, 4 * rows)
    if inp.nbytes > I31_MAX:
        raise ValueError("inp too large")
    out.arr[:] = np.argmax(inp.arr.reshape(rows, n), axis=1).astype(np.int32)
