"""TFLite's own derivation of the integer kernel parameters from what a .tflite
file stores (float32 scales, int64 zero points, op options).

Each function restates what TFLite Micro computes in a kernel's Prepare, so a
test can hand our kernels the very multipliers, shifts and clamps that TFLM
uses. The sources each one follows (tensorflow/tflite-micro):

* ``quantize_multiplier``: tensorflow/lite/kernels/internal/quantization_util.cc
  QuantizeMultiplier (double-rounding build, TFLITE_SINGLE_ROUNDING off, float
  not emulated).
* ``conv_multipliers``: tensorflow/lite/kernels/kernel_util.cc
  PopulateConvolutionQuantizationParams (CONV_2D, DEPTHWISE_CONV_2D; also
  FULLY_CONNECTED with per-channel weights, fully_connected_common.cc).
* ``fc_multipliers``: FULLY_CONNECTED, per-channel as above, and per-tensor
  as the pinned TFLM build was measured to compute it (see there).
* ``activation_range``: kernel_util.cc CalculateActivationRangeQuantized.
* ``add_params``: micro/kernels/add_common.cc CalculateOpDataAdd.
* ``softmax_params``: micro/kernels/softmax_common.cc CalculateSoftmaxParams,
  quantization_util.cc PreprocessSoftmaxScaling and CalculateInputRadius.
* ``out_size`` / ``padding``: tensorflow/lite/kernels/padding.h ComputeOutSize,
  ComputePaddingWithOffset.

The file stores scales as float32; C++ widens them to double at the points
noted below. Python floats are doubles and ``np.float32`` arithmetic is
float32, so each step rounds exactly where the C++ does. Shifts follow
TFLite's sign convention: positive = left shift (the ``shift`` of
docs/kernels.md's ``mul_by_quantized_mult``).
"""

import math

import numpy as np

I8_MIN, I8_MAX = -128, 127

# Activation codes of the schema (ActivationFunctionType) and padding codes (Padding).
ACT_NONE, ACT_RELU, ACT_RELU_N1_TO_1, ACT_RELU6 = 0, 1, 2, 3
PADDING_SAME, PADDING_VALID = 0, 1

# ADD's fixed headroom for int8 (CalculateOpDataAdd: 15 for int16, 20 for int8).
ADD_LEFT_SHIFT = 20
# SOFTMAX: integer bits of the Q5.26 scaled difference (kScaledDiffIntegerBits).
SOFTMAX_DIFF_INTEGER_BITS = 5


def f32(x):
    """The float32 a .tflite file stores for x, as a Python float (double)."""
    return float(np.float32(x))


def _round_half_away(x):
    """TfLiteRound on a double (std::round): halves away from zero."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


def quantize_multiplier(real):
    """QuantizeMultiplier: (multiplier, shift) with real ~= multiplier * 2^(shift - 31),
    multiplier in [2^30, 2^31 - 1] (or 0).

    q, shift = frexp(real); q_fixed = round(q * 2^31); q_fixed == 2^31 becomes
    2^30 with shift + 1; shift < -31 flushes to (0, 0)."""
    real = float(real)
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(_round_half_away(q * float(1 << 31)))
    assert q_fixed <= (1 << 31)
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    assert q_fixed <= (1 << 31) - 1
    if shift < -31:
        shift = 0
        q_fixed = 0
    return q_fixed, shift


def quantize_multiplier_smaller_than_one(real):
    """QuantizeMultiplierSmallerThanOneExp: requires 0 < real < 1; shift <= 0."""
    if not 0.0 < real < 1.0:
        raise ValueError("multiplier %r not in (0, 1)" % real)
    m, s = quantize_multiplier(real)
    assert s <= 0
    return m, s


def quantize_multiplier_greater_than_one(real):
    """QuantizeMultiplierGreaterThanOne: requires real > 1; shift >= 0."""
    if not real > 1.0:
        raise ValueError("multiplier %r not > 1" % real)
    m, s = quantize_multiplier(real)
    assert s >= 0
    return m, s


def conv_multipliers(in_scale, w_scales, out_scale, n_channels=None):
    """Per-channel (mult, shift) int32 arrays of CONV_2D / DEPTHWISE_CONV_2D, and of
    FULLY_CONNECTED with per-channel weights.

    effective_scale[c] = double(in_scale) * double(w_scale[c]) / double(out_scale),
    evaluated left to right in double. A single weight scale is broadcast to
    ``n_channels`` (conv's per-tensor case)."""
    w_scales = [f32(s) for s in np.atleast_1d(w_scales)]
    if len(w_scales) == 1 and n_channels:
        w_scales = w_scales * n_channels
    i_s, o_s = f32(in_scale), f32(out_scale)
    mult, shift = [], []
    for w in w_scales:
        m, s = quantize_multiplier(i_s * w / o_s)
        mult.append(m)
        shift.append(s)
    return np.array(mult, dtype=np.int32), np.array(shift, dtype=np.int32)


def fc_multipliers(in_scale, w_scales, out_scale, n_out):
    """(mult, shift) int32 arrays of length n_out for FULLY_CONNECTED, per-channel
    or per-tensor (one weight scale, broadcast): both as ``conv_multipliers``.

    Measured, not read: for per-tensor weights the pinned TFLM build uses the
    all-double product too. The stored kernel_util.cc source routes per-tensor
    FC through GetQuantizedConvolutionMultipler, whose product is rounded to
    float32 (``fc_multiplier_float32_product``); on scales where the two
    multipliers round an output differently, TFLM gives the double-product
    result every time (test_fc_per_tensor_multiplier_is_the_double_product)."""
    return conv_multipliers(in_scale, w_scales, out_scale, n_channels=n_out)


def fc_multiplier_float32_product(in_scale, w_scale, out_scale):
    """GetQuantizedConvolutionMultipler as the stored source spells it:
    double(float(in_scale * w_scale)) / double(out_scale), the product rounded to
    float32. Not what the pinned TFLM build computes (see fc_multipliers); kept
    so a test can show that the difference is real and which side TFLM takes."""
    prod = float(np.float32(in_scale) * np.float32(w_scale))
    return quantize_multiplier(prod / f32(out_scale))


def _quantize_value(scale, zero_point, f):
    """kernel_util.cc Quantize: zero_point + (int)TfLiteRound(f / scale), f/scale in float32."""
    tmp = np.float32(f) / np.float32(scale)
    return int(zero_point) + int(_round_half_away(float(tmp)))


def activation_range(activation, out_scale, out_zp, qmin=I8_MIN, qmax=I8_MAX):
    """CalculateActivationRangeQuantized for int8: (act_min, act_max)."""
    if activation == ACT_RELU:
        return max(qmin, _quantize_value(out_scale, out_zp, 0.0)), qmax
    if activation == ACT_RELU6:
        return (max(qmin, _quantize_value(out_scale, out_zp, 0.0)),
                min(qmax, _quantize_value(out_scale, out_zp, 6.0)))
    if activation == ACT_RELU_N1_TO_1:
        return (max(qmin, _quantize_value(out_scale, out_zp, -1.0)),
                min(qmax, _quantize_value(out_scale, out_zp, 1.0)))
    if activation == ACT_NONE:
        return qmin, qmax
    raise ValueError("activation %r not supported" % activation)


def add_params(s1, z1, s2, z2, out_scale, out_zp, activation=ACT_NONE):
    """CalculateOpDataAdd for int8. Returns a dict:
    left_shift (20), input{1,2}_offset (= -zero point), input{1,2}_multiplier/shift,
    output_multiplier/shift, output_offset, act_min, act_max.

    twice_max = 2 * double(max(s1, s2)); real_k = double(s_k) / twice_max;
    real_out = twice_max / ((1 << 20) * double(out_scale)); each through
    QuantizeMultiplierSmallerThanOneExp."""
    s1, s2, so = f32(s1), f32(s2), f32(out_scale)
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = quantize_multiplier_smaller_than_one(s1 / twice_max)
    m2, sh2 = quantize_multiplier_smaller_than_one(s2 / twice_max)
    mo, sho = quantize_multiplier_smaller_than_one(twice_max / (float(1 << ADD_LEFT_SHIFT) * so))
    act_min, act_max = activation_range(activation, out_scale, out_zp)
    return {
        "left_shift": ADD_LEFT_SHIFT,
        "input1_offset": -int(z1), "input1_multiplier": m1, "input1_shift": sh1,
        "input2_offset": -int(z2), "input2_multiplier": m2, "input2_shift": sh2,
        "output_offset": int(out_zp), "output_multiplier": mo, "output_shift": sho,
        "act_min": act_min, "act_max": act_max,
    }


def calculate_input_radius(input_integer_bits, input_left_shift, total_signed_bits=31):
    """CalculateInputRadius: floor((2^ib - 1) * 2^(tsb - ib) / 2^left_shift), in double."""
    max_input_rescaled = (1.0 * ((1 << input_integer_bits) - 1)
                          * float(1 << (total_signed_bits - input_integer_bits))
                          / float(1 << input_left_shift))
    return int(math.floor(max_input_rescaled))


def softmax_params(in_scale, beta=1.0):
    """int8 -> int8 SOFTMAX (output scale 1/256, zero point -128). Returns a dict:
    input_multiplier, input_left_shift, diff_min.

    input_beta_real = min(double(beta) * double(in_scale) * 2^26, 2^31 - 1)
    (PreprocessSoftmaxScaling with 5 integer bits), through
    QuantizeMultiplierGreaterThanOne; diff_min = -CalculateInputRadius(5, left_shift)."""
    ib = SOFTMAX_DIFF_INTEGER_BITS
    real = min(f32(beta) * f32(in_scale) * float(1 << (31 - ib)), float((1 << 31) - 1))
    mult, left_shift = quantize_multiplier_greater_than_one(real)
    return {
        "input_multiplier": mult,
        "input_left_shift": left_shift,
        "diff_min": -calculate_input_radius(ib, left_shift),
    }


def out_size(padding, in_size, filter_size, stride, dilation=1):
    """ComputeOutSize (GetWindowedOutputSize)."""
    eff = (filter_size - 1) * dilation + 1
    if padding == PADDING_SAME:
        return (in_size + stride - 1) // stride
    if padding == PADDING_VALID:
        return (in_size + stride - eff) // stride
    raise ValueError("padding %r" % padding)


def padding(padding_type, in_size, filter_size, stride, dilation=1):
    """ComputePaddingWithOffset for one spatial dimension: (out_size, pad_before,
    pad_after). TFLite pads total // 2 before and the rest (one more when odd)
    after; kernels only see pad_before and clip windows at the far edge."""
    out = out_size(padding_type, in_size, filter_size, stride, dilation)
    eff = (filter_size - 1) * dilation + 1
    total = max((out - 1) * stride + eff - in_size, 0)
    return out, total // 2, total // 2 + total % 2
