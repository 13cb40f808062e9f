"""`_tinyadapt` for CPython: the kernels of docs/kernels.md in numpy, bit-exact
with the C natmod (natmod/ta_*.c) that MicroPython loads under the same name.

Kernels write into caller-owned buffers and return None (xorshift32_fill
returns the generator state); every check runs before any output byte is
written. Integer rules live in `fixedpoint`, argument checks in `bufcheck`.

Choices the spec leaves open, shared with the C kernels:
* fully_connected: ``bias[o] + sum`` wraps modulo 2^32 (int32 hardware
  behaviour); the sum alone cannot overflow.
* ``requant(...) + out_zp`` is exact before the activation clamp.
* requantize accepts an empty ``inp`` (count 0) as a no-op; fully_connected
  needs batch >= 1.
* Size errors that have no single expected size read
  ``"<arg>: size <n> bytes, expected a [nonzero ]multiple of <k>"``.
* saturate with lo > hi raises ``ValueError("lo > hi")``.

The int8 inference kernels of ABI 2 (NHWC, TFLite Micro reference semantics)
live in submodules: `conv` (conv2d, depthwise_conv2d), `pool` (avg_pool,
max_pool), `eltwise` (add, softmax, argmax), with their shared geometry
checks in `geometry`. Host-only helpers that a converter uses, not part of
the natmod: `compute_padding` (TFLite SAME/VALID), `quantize_multiplier`
and `softmax_params` (in `params`).
"""

import zlib as _zlib

import numpy as np

from . import fixedpoint as _fp
from .bufcheck import (
    I32_MAX,
    I32_MIN,
    INT8,
    INT32,
    UINT32,
    buffer_arg,
    check_act,
    check_mult_elements,
    check_shift_elements,
    check_size,
    check_size_multiple,
    int_arg,
)

# Version of this function set; python_lib/tinyadapt refuses a mismatching kernel module.
ABI = 2

__all__ = [
    "ABI",
    "fully_connected",
    "requantize",
    "rounding_rshift",
    "srdhm",
    "mul_by_quantized_mult",
    "saturate",
    "xorshift32_fill",
    "crc32",
    "conv2d",
    "depthwise_conv2d",
    "avg_pool",
    "max_pool",
    "add",
    "softmax",
    "argmax",
    "compute_padding",
    "quantize_multiplier",
    "softmax_params",
]

_I8_LO, _I8_HI = -128, 127
_DIM_MAX = 65535

# int8 inference kernels (ABI 2) and host-only parameter helpers
from .conv import conv2d, depthwise_conv2d  # noqa: E402
from .eltwise import add, argmax, softmax  # noqa: E402
from .geometry import compute_padding  # noqa: E402
from .params import quantize_multiplier, softmax_params  # noqa: E402
from .pool import avg_pool, max_pool  # noqa: E402


def fully_connected(out, inp, weights, bias, mult, shift, n_in, n_out, in_zp, out_zp,
                    act_min, act_max):
    """out[b, o] = clamp(requant(bias[o] + sum_i (inp[b, i] - in_zp) * w[o, i],
    mult[o], shift[o]) + out_zp, act_min, act_max)."""
    out = buffer_arg("out", out, INT8, writable=True)
    inp = buffer_arg("inp", inp, INT8)
    weights = buffer_arg("weights", weights, INT8)
    bias = buffer_arg("bias", bias, INT32)
    mult = buffer_arg("mult", mult, INT32)
    shift = buffer_arg("shift", shift, INT32)
    n_in = int_arg("n_in", n_in, 1, _DIM_MAX)
    n_out = int_arg("n_out", n_out, 1, _DIM_MAX)
    in_zp = int_arg("in_zp", in_zp, _I8_LO, _I8_HI)
    out_zp = int_arg("out_zp", out_zp, _I8_LO, _I8_HI)
    act_min = int_arg("act_min", act_min, _I8_LO, _I8_HI)
    act_max = int_arg("act_max", act_max, _I8_LO, _I8_HI)
    check_act(act_min, act_max)
    check_size(weights, n_out * n_in)
    check_size(bias, 4 * n_out)
    check_size(mult, 4 * n_out)
    check_size(shift, 4 * n_out)
    check_size_multiple(inp, n_in, nonzero=True)
    n_batch = inp.nbytes // n_in
    check_size(out, n_batch * n_out)
    check_shift_elements(shift)
    check_mult_elements(mult)

    x = inp.arr.astype(np.int64).reshape(n_batch, n_in) - in_zp
    w = weights.arr.astype(np.int64).reshape(n_out, n_in)
    # exact: |sum| <= 65535 * 255 * 128 < 2^31; only adding bias can wrap
    acc = _fp.wrap_i32(x @ w.T + bias.arr.astype(np.int64))
    res = _fp.requant_to_i8(acc, mult.arr.astype(np.int64), shift.arr.astype(np.int64),
                            out_zp, act_min, act_max)
    out.arr[:] = res.reshape(-1)


def requantize(out, inp, mult, shift, out_zp, act_min, act_max):
    """out[k] = clamp(requant(inp[k], mult[k % C], shift[k % C]) + out_zp,
    act_min, act_max), C = number of elements of mult."""
    out = buffer_arg("out", out, INT8, writable=True)
    inp = buffer_arg("inp", inp, INT32)
    mult = buffer_arg("mult", mult, INT32)
    shift = buffer_arg("shift", shift, INT32)
    out_zp = int_arg("out_zp", out_zp, _I8_LO, _I8_HI)
    act_min = int_arg("act_min", act_min, _I8_LO, _I8_HI)
    act_max = int_arg("act_max", act_max, _I8_LO, _I8_HI)
    check_act(act_min, act_max)
    check_size_multiple(mult, 4, nonzero=True)
    n_ch = mult.nbytes // 4
    check_size(shift, mult.nbytes)
    check_size_multiple(inp, 4 * n_ch, nonzero=False)
    count = inp.nbytes // (4 * n_ch)
    check_size(out, count * n_ch)
    check_shift_elements(shift)
    check_mult_elements(mult)

    if count == 0:
        return
    acc = inp.arr.astype(np.int64).reshape(count, n_ch)
    res = _fp.requant_to_i8(acc, mult.arr.astype(np.int64), shift.arr.astype(np.int64),
                            out_zp, act_min, act_max)
    out.arr[:] = res.reshape(-1)


def rounding_rshift(x, n):
    """x / 2^n rounded to nearest, ties away from zero (TFLite
    RoundingDivideByPOT); x int32, n in [0, 31]."""
    x = int_arg("x", x, I32_MIN, I32_MAX)
    n = int_arg("n", n, 0, 31)
    return int(_fp.rounding_rshift(x, n))


def srdhm(a, b):
    """gemmlowp saturating rounding doubling high multiply of two int32."""
    a = int_arg("a", a, I32_MIN, I32_MAX)
    b = int_arg("b", b, I32_MIN, I32_MAX)
    return int(_fp.srdhm(a, b))


def mul_by_quantized_mult(x, mult, shift):
    """TFLite double-rounding MultiplyByQuantizedMultiplier; x int32, mult in
    [0, 2^31 - 1], shift in [-31, 30]."""
    x = int_arg("x", x, I32_MIN, I32_MAX)
    mult = int_arg("mult", mult, 0, I32_MAX)
    shift = int_arg("shift", shift, -31, 30)
    return int(_fp.mul_by_quantized_mult(x, mult, shift))


def saturate(x, lo, hi):
    """Clamp an int32 to [lo, hi]."""
    x = int_arg("x", x, I32_MIN, I32_MAX)
    lo = int_arg("lo", lo, I32_MIN, I32_MAX)
    hi = int_arg("hi", hi, I32_MIN, I32_MAX)
    if lo > hi:
        raise ValueError("lo > hi")
    return int(_fp.saturate(x, lo, hi))


def xorshift32_fill(out, seed):
    """Fill uint32 ``out`` with successive xorshift32 states from ``seed``
    (nonzero uint32); return the final state, the next call's seed."""
    out = buffer_arg("out", out, UINT32, writable=True)
    seed = int_arg("seed", seed, 1, 0xFFFFFFFF)
    states, final = _fp.xorshift32(seed, out.arr.size)
    out.arr[:] = states
    return final


def crc32(data, crc=0):
    """CRC-32 (IEEE, as zlib.crc32) of the bytes of ``data``, continuing from ``crc``."""
    data = buffer_arg("data", data, INT8)
    crc = int_arg("crc", crc, 0, 0xFFFFFFFF)
    return _zlib.crc32(data.arr.tobytes(), crc)
