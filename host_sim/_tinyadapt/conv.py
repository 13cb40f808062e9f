"""conv2d and depthwise_conv2d: TFLite int8 per-channel convolutions over NHWC
tensors, bit-exact with natmod/ta_conv.c (formulas in natmod/ta_kernels.h
and docs/kernels.md)."""

import numpy as np

from . import fixedpoint as _fp
from .bufcheck import (
    INT8,
    INT32,
    buffer_arg,
    check_act,
    check_mult_elements,
    check_shift_elements,
    check_size,
    check_size_multiple,
    int_arg,
)
from .geometry import DIM_MAX, I31_MAX, Geom, check_volume, taps, window_args

_I8_LO, _I8_HI = -128, 127


def _quant_args(in_zp, out_zp, act_min, act_max):
    in_zp = int_arg("in_zp", in_zp, _I8_LO, _I8_HI)
    out_zp = int_arg("out_zp", out_zp, _I8_LO, _I8_HI)
    act_min = int_arg("act_min", act_min, _I8_LO, _I8_HI)
    act_max = int_arg("act_max", act_max, _I8_LO, _I8_HI)
    check_act(act_min, act_max)
    return in_zp, out_zp, act_min, act_max


def _batch_and_out(inp, out, in_vol, out_vol):
    """inp: a nonzero multiple of one image; out: batch images of out_vol."""
    check_size_multiple(inp, in_vol, nonzero=True)
    if inp.nbytes > I31_MAX:
        raise ValueError("inp too large")
    batch = inp.nbytes // in_vol
    if batch * out_vol > I31_MAX:
        raise ValueError("out too large")
    check_size(out, batch * out_vol)
    return batch


def _finish(out, acc, bias, mult, shift, out_zp, act_min, act_max):
    """out = clamp(requant(wrap32(acc + bias)) + out_zp), channel last."""
    acc = _fp.wrap_i32(acc + bias.arr.astype(np.int64))
    res = _fp.requant_to_i8(acc, mult.arr.astype(np.int64), shift.arr.astype(np.int64),
                            out_zp, act_min, act_max)
    out.arr[:] = res.reshape(-1)


def _channel_params(weights, w_vol, bias, mult, shift, out_c, inp, out, in_vol, out_vol):
    """The size and element checks that conv2d and depthwise_conv2d share, in the
    order of docs/kernels.md; returns the batch."""
    check_size(weights, w_vol)
    check_size(bias, 4 * out_c)
    check_size(mult, 4 * out_c)
    check_size(shift, 4 * out_c)
    batch = _batch_and_out(inp, out, in_vol, out_vol)
    check_shift_elements(shift)
    check_mult_elements(mult)
    return batch


def conv2d(out, inp, weights, bias, mult, shift, in_h, in_w, in_c, out_c, k_h, k_w,
           stride_h, stride_w, pad_top, pad_left, out_h, out_w, in_zp, out_zp,
           act_min, act_max):
    """out[b, oy, ox, oc] = clamp(requant(bias[oc] + sum over in-image taps and
    ic of (inp[b, iy, ix, ic] - in_zp) * weights[oc, ky, kx, ic]) + out_zp,
    act_min, act_max), the sum wrapping modulo 2^32; weights OHWI."""
    out = buffer_arg("out", out, INT8, writable=True)
    inp = buffer_arg("inp", inp, INT8)
    weights = buffer_arg("weights", weights, INT8)
    bias = buffer_arg("bias", bias, INT32)
    mult = buffer_arg("mult", mult, INT32)
    shift = buffer_arg("shift", shift, INT32)
    in_h = int_arg("in_h", in_h, 1, DIM_MAX)
    in_w = int_arg("in_w", in_w, 1, DIM_MAX)
    in_c = int_arg("in_c", in_c, 1, DIM_MAX)
    out_c = int_arg("out_c", out_c, 1, DIM_MAX)
    k_h, k_w, stride_h, stride_w, pad_top, pad_left, out_h, out_w = window_args(
        k_h, k_w, stride_h, stride_w, pad_top, pad_left, out_h, out_w, in_h, in_w, DIM_MAX)
    in_zp, out_zp, act_min, act_max = _quant_args(in_zp, out_zp, act_min, act_max)
    in_vol = check_volume("inp", in_h, in_w, in_c)
    w_vol = check_volume("weights", out_c, k_h, k_w, in_c)
    out_vol = check_volume("out", out_h, out_w, out_c)
    batch = _channel_params(weights, w_vol, bias, mult, shift, out_c, inp, out,
                            in_vol, out_vol)

    g = Geom(batch=batch, in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h, out_w=out_w,
             out_c=out_c, k_h=k_h, k_w=k_w, stride_h=stride_h, stride_w=stride_w,
             pad_top=pad_top, pad_left=pad_left)
    # cells outside the input hold in_zp - in_zp = 0: they add nothing
    x = inp.arr.astype(np.int64).reshape(batch, in_h, in_w, in_c) - in_zp
    w = weights.arr.astype(np.int64).reshape(out_c, k_h, k_w, in_c)
    acc = np.zeros((batch, out_h, out_w, out_c), dtype=np.int64)
    for ky, kx, view in taps(x, g, 0):
        # exact in int64: at most 2^31 terms of |term| <= 255 * 128
        acc += np.tensordot(view, w[:, ky, kx, :], axes=([3], [1]))
    _finish(out, acc, bias, mult, shift, out_zp, act_min, act_max)


def depthwise_conv2d(out, inp, weights, bias, mult, shift, in_h, in_w, in_c, depth_multiplier,
                     k_h, k_w, stride_h, stride_w, pad_top, pad_left, out_h, out_w,
                     in_zp, out_zp, act_min, act_max):
    """out[b, oy, ox, oc] with oc = ic * depth_multiplier + m: clamp(requant(bias[oc]
    + sum over in-image taps of (inp[b, iy, ix, ic] - in_zp) * weights[ky, kx, oc])
    + out_zp, act_min, act_max); weights [k_h][k_w][in_c * depth_multiplier]."""
    out = buffer_arg("out", out, INT8, writable=True)
    inp = buffer_arg("inp", inp, INT8)
    weights = buffer_arg("weights", weights, INT8)
    bias = buffer_arg("bias", bias, INT32)
    mult = buffer_arg("mult", mult, INT32)
    shift = buffer_arg("shift", shift, INT32)
    in_h = int_arg("in_h", in_h, 1, DIM_MAX)
    in_w = int_arg("in_w", in_w, 1, DIM_MAX)
    in_c = int_arg("in_c", in_c, 1, DIM_MAX)
    depth_multiplier = int_arg("depth_multiplier", depth_multiplier, 1, DIM_MAX // in_c)
    out_c = in_c * depth_multiplier
    k_h, k_w, stride_h, stride_w, pad_top, pad_left, out_h, out_w = window_args(
        k_h, k_w, stride_h, stride_w, pad_top, pad_left, out_h, out_w, in_h, in_w, DIM_MAX)
    in_zp, out_zp, act_min, act_max = _quant_args(in_zp, out_zp, act_min, act_max)
    in_vol = check_volume("inp", in_h, in_w, in_c)
    w_vol = check_volume("weights", k_h, k_w, out_c)
    out_vol = check_volume("out", out_h, out_w, out_c)
    batch = _channel_params(weights, w_vol, bias, mult, shift, out_c, inp, out,
                            in_vol, out_vol)

    g = Geom(batch=batch, in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h, out_w=out_w,
             out_c=out_c, k_h=k_h, k_w=k_w, stride_h=stride_h, stride_w=stride_w,
             pad_top=pad_top, pad_left=pad_left)
    x = inp.arr.astype(np.int64).reshape(batch, in_h, in_w, in_c) - in_zp
    w = weights.arr.astype(np.int64).reshape(k_h, k_w, out_c)
    acc = np.zeros((batch, out_h, out_w, out_c), dtype=np.int64)
    for ky, kx, view in taps(x, g, 0):
        # input channel ic feeds output channels ic * depth_multiplier + m
        acc += np.repeat(view, depth_multiplier, axis=3) * w[ky, kx, :]
    _finish(out, acc, bias, mult, shift, out_zp, act_min, act_max)
