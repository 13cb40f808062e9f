"""Where the kernels' integer parameters come from: TFLite's float-to-integer
rules for multipliers and softmax scaling, as a converter applies them once
on the host (tensorflow/lite/kernels/internal/quantization_util.cc and
tensorflow/lite/micro/kernels/softmax_common.cc). Host-only helpers: floats
never reach a kernel.
"""

import math
import struct

SOFTMAX_SCALED_DIFF_INTEGER_BITS = 5  # TFLite's kScaledDiffIntegerBits


def _f32(x):
    """x rounded to float32, as a value stored in a model file."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def quantize_multiplier(real):
    """TFLite QuantizeMultiplier (double-rounding build): (mult, shift) with
    real ~= mult * 2^(shift - 31), mult in [2^30, 2^31 - 1] or 0.
    frexp(real) = (q, shift), q in [0.5, 1); mult = round(q * 2^31) (half
    away from zero); mult == 2^31 becomes 2^30 with shift + 1; shift < -31
    flushes to (0, 0)."""
    real = float(real)
    if real == 0.0:
        return 0, 0
    if real < 0 or math.isnan(real) or math.isinf(real):
        raise ValueError("multiplier must be finite and >= 0")
    q, shift = math.frexp(real)
    # q * 2^31 is exact; it is >= 2^30, so adding 0.5 is exact too
    q_fixed = int(math.floor(q * (1 << 31) + 0.5))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def softmax_params(input_scale, beta=1.0):
    """(input_multiplier, input_left_shift, diff_min) for `softmax` from the input
    tensor's scale and the SOFTMAX op's beta, as TFLite Micro's
    CalculateSoftmaxParams for int8 (both stored as float32):

        real       = min(beta * input_scale * 2^(31 - 5), 2^31 - 1)
        input_multiplier, input_left_shift = QuantizeMultiplierGreaterThanOne(real)
        diff_min   = -floor((2^5 - 1) * 2^(31 - 5) / 2^input_left_shift)

    (5 = the integer bits of the Q5.26 exp input.) Raises ValueError when
    real <= 1, which TFLite refuses too."""
    ib = SOFTMAX_SCALED_DIFF_INTEGER_BITS
    real = min(_f32(beta) * _f32(input_scale) * (1 << (31 - ib)), (1 << 31) - 1.0)
    if not real > 1.0:
        raise ValueError("beta * input_scale * 2^26 must be > 1")
    mult, shift = quantize_multiplier(real)
    radius = math.floor(1.0 * ((1 << ib) - 1) * (1 << (31 - ib)) / (1 << shift))
    return mult, shift, -int(radius)
