"""Convert an int8 TFLite model (.tflite) to a .tam model file (docs/tam.md).

    from tinyadapt_host import convert_tflite
    model = convert_tflite.convert_file("model.tflite", "model.tam")

or `tinyadapt convert model.tflite -o model.tam` (docs/convert.md).

The .tflite flatbuffer is read with the generated schema classes of the `tflite`
package. Every integer parameter the kernels take (per-channel multipliers and
shifts, clamps, ADD and SOFTMAX parameters, padding) is computed here, once, the
way TFLite Micro computes it in each kernel's Prepare, so that the converted model
runs through `_tinyadapt` to TFLite Micro's bytes. The float steps follow the C++:
the file stores float32 scales, C++ widens them to double where noted; Python
floats are doubles and `np.float32` arithmetic is float32, so each step rounds
where TFLite's does.

What is refused, with a ConvertError (a ValueError) that says why: unsupported
ops (all of them listed at once, with their positions), float/uint8/int16
activations, QUANTIZE/DEQUANTIZE anywhere but at the model's edges, shapes other
than NHWC batch 1 for the spatial ops, dilation, broadcasting ADD, and every
other case where the .tam kernels would not give TFLite Micro's result.
"""

import hashlib
import json
import math
import os

import numpy as np

from . import tam

__all__ = ["ConvertError", "SUPPORTED_OPS", "convert", "convert_bytes", "convert_file",
           "read_tflite", "quantize_multiplier", "conv_multipliers", "fc_multipliers",
           "activation_range", "add_params", "softmax_params", "mean_multiplier", "padding"]

CONVERTER = "tinyadapt_host.convert_tflite"
CONVERTER_VERSION = 1


class ConvertError(ValueError):
    """A .tflite model that cannot be converted (corrupt, unsupported, not int8)."""


# ---------------------------------------------------------------------------
# TFLite's derivation of the kernels' integer parameters.
#
# Each function restates what TFLite Micro computes in a kernel's Prepare
# (tensorflow/tflite-micro, tensorflow/lite/kernels/internal/quantization_util.cc,
# tensorflow/lite/kernels/kernel_util.cc, micro/kernels/*_common.cc). Shifts
# follow TFLite's sign convention: positive = left shift, the `shift` that
# `_tinyadapt`'s kernels take. tests/tflite_quant.py keeps an independent copy
# of these rules as the test oracle.

I8_MIN, I8_MAX = -128, 127

# schema codes: ActivationFunctionType and Padding
ACT_NONE, ACT_RELU, ACT_RELU_N1_TO_1, ACT_RELU6, ACT_TANH, ACT_SIGN_BIT = 0, 1, 2, 3, 4, 5
ACT_NAMES = {ACT_NONE: "NONE", ACT_RELU: "RELU", ACT_RELU_N1_TO_1: "RELU_N1_TO_1",
             ACT_RELU6: "RELU6", ACT_TANH: "TANH", ACT_SIGN_BIT: "SIGN_BIT"}
PADDING_SAME, PADDING_VALID = 0, 1

ADD_LEFT_SHIFT = 20             # CalculateOpDataAdd: int8 headroom
SOFTMAX_DIFF_INTEGER_BITS = 5   # kScaledDiffIntegerBits
SOFTMAX_MAX_DEPTH = 511         # _tinyadapt.softmax: n in [1, 511]


def f32(x):
    """The float32 a .tflite file stores for x, as a Python float."""
    return float(np.float32(x))


def _round_half_away(x):
    """TfLiteRound / std::round on a double: halves away from zero."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


def quantize_multiplier(real):
    """TFLite's QuantizeMultiplier, the one definition in host_sim's `_tinyadapt`
    (params.py); a bad value becomes a ConvertError."""
    from _tinyadapt import quantize_multiplier as qm
    try:
        return qm(real)
    except ValueError as e:
        raise ConvertError("multiplier %r: %s" % (real, e))


def _smaller_than_one(real, what):
    """QuantizeMultiplierSmallerThanOneExp: needs 0 < real < 1."""
    if not 0.0 < real < 1.0:
        raise ConvertError("%s multiplier %r is not in (0, 1) as TFLite requires" % (what, real))
    return quantize_multiplier(real)


def conv_multipliers(in_scale, w_scales, out_scale, n_channels):
    """Per-output-channel (mult, shift) int32 arrays of CONV_2D, DEPTHWISE_CONV_2D
    and FULLY_CONNECTED (PopulateConvolutionQuantizationParams):
    effective[c] = double(in_scale) * double(w_scale[c]) / double(out_scale),
    left to right in double. One weight scale (per-tensor) is used for every
    channel."""
    w = [f32(s) for s in np.atleast_1d(w_scales)]
    if len(w) == 1:
        w = w * n_channels
    i_s, o_s = f32(in_scale), f32(out_scale)
    pairs = [quantize_multiplier(i_s * s / o_s) for s in w]
    if max(p[1] for p in pairs) > 30:
        raise ConvertError("input scale x weight scale / output scale = %r: too large for a "
                           "requantization multiplier (shift above 30)"
                           % max(i_s * s / o_s for s in w))
    return (np.array([p[0] for p in pairs], dtype=np.int32),
            np.array([p[1] for p in pairs], dtype=np.int32))


def fc_multipliers(in_scale, w_scales, out_scale, n_out):
    """FULLY_CONNECTED's (mult, shift), per-channel or per-tensor: as
    conv_multipliers. For per-tensor weights TFLite's source rounds
    in_scale * w_scale to float32 first (GetQuantizedConvolutionMultipler),
    but the TFLite Micro build we match was measured to use the all-double
    product (tests/test_tflm_reference.py
    test_fc_per_tensor_multiplier_is_the_double_product)."""
    return conv_multipliers(in_scale, w_scales, out_scale, n_out)


def _quantize_value(scale, zero_point, f):
    """kernel_util.cc Quantize: zero_point + TfLiteRound(f / scale), the division in float32."""
    return int(zero_point) + int(_round_half_away(float(np.float32(f) / np.float32(scale))))


def activation_range(activation, out_scale, out_zp):
    """CalculateActivationRangeQuantized for int8: the fused activation as the
    clamp (act_min, act_max)."""
    if activation == ACT_NONE:
        return I8_MIN, I8_MAX
    if activation == ACT_RELU:
        return max(I8_MIN, _quantize_value(out_scale, out_zp, 0.0)), I8_MAX
    if activation == ACT_RELU6:
        return (max(I8_MIN, _quantize_value(out_scale, out_zp, 0.0)),
                min(I8_MAX, _quantize_value(out_scale, out_zp, 6.0)))
    if activation == ACT_RELU_N1_TO_1:
        return (max(I8_MIN, _quantize_value(out_scale, out_zp, -1.0)),
                min(I8_MAX, _quantize_value(out_scale, out_zp, 1.0)))
    raise ConvertError("fused activation %s is not supported (NONE, RELU, RELU6, "
                       "RELU_N1_TO_1 are)" % ACT_NAMES.get(activation, activation))


def add_params(s1, s2, out_scale):
    """CalculateOpDataAdd for int8: the .tam add params (left_shift, in1_mult,
    in1_shift, in2_mult, in2_shift, out_mult, out_shift).
    twice_max = 2 * double(max(s1, s2)); real_k = double(s_k) / twice_max;
    real_out = twice_max / (2^20 * double(out_scale))."""
    s1, s2, so = f32(s1), f32(s2), f32(out_scale)
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = _smaller_than_one(s1 / twice_max, "ADD input 1")
    m2, sh2 = _smaller_than_one(s2 / twice_max, "ADD input 2")
    mo, sho = _smaller_than_one(twice_max / (float(1 << ADD_LEFT_SHIFT) * so), "ADD output")
    return (ADD_LEFT_SHIFT, m1, sh1, m2, sh2, mo, sho)


def softmax_params(in_scale, beta):
    """CalculateSoftmaxParams for int8 -> int8: (input_multiplier,
    input_left_shift, diff_min).
    real = min(double(beta) * double(in_scale) * 2^26, 2^31 - 1) through
    QuantizeMultiplierGreaterThanOne; diff_min = -CalculateInputRadius(5, shift)
    = -floor((2^5 - 1) * 2^26 / 2^shift), in double."""
    ib = SOFTMAX_DIFF_INTEGER_BITS
    real = min(f32(beta) * f32(in_scale) * float(1 << (31 - ib)), float((1 << 31) - 1))
    if not real > 1.0:
        raise ConvertError("beta %r x input scale %r x 2^26 = %r must be > 1 (TFLite refuses "
                           "it too)" % (f32(beta), f32(in_scale), real))
    mult, shift = quantize_multiplier(real)
    radius = math.floor(1.0 * ((1 << ib) - 1) * float(1 << (31 - ib)) / float(1 << shift))
    return mult, shift, -int(radius)


def mean_multiplier(in_scale, out_scale, count):
    """TFLite Micro's int8 MEAN (reference_ops::QuantizedMeanOrSum): the requant
    (mult, shift) that it applies to sum(x - in_zp) over `count` elements.
    QuantizeMultiplier(double(in_scale) / double(out_scale)), then 1/count folded
    in: s = min(floor(log2(count)), 32, 31 + shift);
    mult = (int64(mult) << s) // count; shift -= s."""
    m, sh = quantize_multiplier(f32(in_scale) / f32(out_scale))
    s = min(int(count).bit_length() - 1, 32, 31 + sh)
    return int((m << s) // count), sh - s


def padding(padding_type, in_size, k, stride):
    """ComputeOutSize and ComputePaddingWithOffset for one axis (dilation 1):
    (out_size, pad_before, pad_after)."""
    if padding_type == PADDING_SAME:
        out = (in_size + stride - 1) // stride
    elif padding_type == PADDING_VALID:
        out = (in_size + stride - k) // stride
    else:
        raise ConvertError("padding type %r is not SAME or VALID" % padding_type)
    total = max((out - 1) * stride + k - in_size, 0)
    return out, total // 2, total - total // 2


# ---------------------------------------------------------------------------
# Reading the flatbuffer into plain Python objects

_TYPE_NAMES = None
_OP_NAMES = None
_OPTION_NAMES = None


def _schema_names():
    global _TYPE_NAMES, _OP_NAMES, _OPTION_NAMES
    if _OP_NAMES is None:
        from tflite.BuiltinOperator import BuiltinOperator
        from tflite.BuiltinOptions import BuiltinOptions
        from tflite.TensorType import TensorType

        def rev(cls):
            return dict((v, k) for k, v in vars(cls).items()
                        if not k.startswith("_") and isinstance(v, int))
        _TYPE_NAMES = rev(TensorType)
        _OP_NAMES = rev(BuiltinOperator)
        _OPTION_NAMES = rev(BuiltinOptions)
    return _TYPE_NAMES, _OP_NAMES, _OPTION_NAMES


_NP_TYPES = {"FLOAT32": "<f4", "FLOAT16": "<f2", "FLOAT64": "<f8", "INT8": "<i1",
             "UINT8": "<u1", "INT16": "<i2", "UINT16": "<u2", "INT32": "<i4",
             "UINT32": "<u4", "INT64": "<i8", "UINT64": "<u8", "BOOL": "<u1"}


class TflTensor:
    """One tensor of the subgraph: `index`, `name`, `type` (schema name: INT8,
    FLOAT32, ...), `shape`, `data` (numpy array of a constant, else None),
    `scales` (float32 array, None when not quantized), `zero_points` (int64),
    `qdim` (quantized dimension), `sparse`."""

    def __init__(self, index, name, type, shape, data, scales, zero_points, qdim, sparse):
        self.index = index
        self.name = name
        self.type = type
        self.shape = shape
        self.data = data
        self.scales = scales
        self.zero_points = zero_points
        self.qdim = qdim
        self.sparse = sparse

    @property
    def numel(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    def label(self):
        return "tensor %d %r" % (self.index, self.name)

    def __repr__(self):
        return "TflTensor(%d, %r, %s, %r)" % (self.index, self.name, self.type, self.shape)


# the option fields read from each options table (all read while parsing, so
# that a corrupt table fails there)
_OPTION_FIELDS = {
    "Conv2DOptions": ("Padding", "StrideW", "StrideH", "FusedActivationFunction",
                      "DilationWFactor", "DilationHFactor"),
    "DepthwiseConv2DOptions": ("Padding", "StrideW", "StrideH", "DepthMultiplier",
                               "FusedActivationFunction", "DilationWFactor", "DilationHFactor"),
    "Pool2DOptions": ("Padding", "StrideW", "StrideH", "FilterWidth", "FilterHeight",
                      "FusedActivationFunction"),
    "FullyConnectedOptions": ("FusedActivationFunction", "WeightsFormat", "KeepNumDims"),
    "AddOptions": ("FusedActivationFunction",),
    "SoftmaxOptions": ("Beta",),
    "ReducerOptions": ("KeepDims",),
    "ArgMaxOptions": ("OutputType",),
}


class TflOp:
    """One operator: `index` (its position in the subgraph), `name` (BuiltinOperator
    name, or CUSTOM(name)), `inputs`/`outputs` (tensor indices, -1 for an absent
    optional input), `options` (dict of the option fields this converter reads,
    e.g. {"StrideH": 1, ...}; None when the op carries no options table),
    `options_name` (the schema's options type)."""

    def __init__(self, index, name, inputs, outputs, options, options_name):
        self.index = index
        self.name = name
        self.inputs = inputs
        self.outputs = outputs
        self.options = options
        self.options_name = options_name

    def label(self):
        return "op %d (%s)" % (self.index, self.name)

    def __repr__(self):
        return "TflOp(%d, %s)" % (self.index, self.name)


class TflGraph:
    """The first subgraph of a .tflite model: tensors, ops in execution order,
    model input and output tensor indices, description, number of subgraphs."""

    def __init__(self, tensors, ops, inputs, outputs, description, n_subgraphs, version):
        self.tensors = tensors
        self.ops = ops
        self.inputs = inputs
        self.outputs = outputs
        self.description = description
        self.n_subgraphs = n_subgraphs
        self.version = version


def _np_vec(obj, name):
    """The vector `name` of a flatbuffer table as a list ([] when absent)."""
    if getattr(obj, name + "IsNone")():
        return []
    return [int(v) for v in getattr(obj, name + "AsNumpy")()]


def _decode(b):
    if b is None:
        return ""
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b)


def read_tflite(data):
    """Parse .tflite bytes into a TflGraph. ConvertError for anything that is not
    a readable TFLite flatbuffer."""
    data = bytes(data)
    if len(data) < 8:
        raise ConvertError("not a TFLite model: %d bytes is too short" % len(data))
    if data[4:8] != b"TFL3":
        raise ConvertError("not a TFLite model: no 'TFL3' file identifier at bytes 4..8 "
                           "(found %r)" % data[4:8])
    root = int.from_bytes(data[0:4], "little")
    if root < 8 or root >= len(data):
        raise ConvertError("corrupt TFLite model: root table offset %d outside the file "
                           "(%d bytes)" % (root, len(data)))
    try:
        return _read_tflite(data)
    except ConvertError:
        raise
    except Exception as e:  # the generated readers do not verify: any garbage ends here
        raise ConvertError("corrupt TFLite model: the flatbuffer cannot be read (%s: %s)"
                           % (type(e).__name__, e)) from None


def _read_tflite(data):
    import tflite
    type_names, op_names, option_names = _schema_names()
    model = tflite.Model.GetRootAs(data, 0)
    n_sub = model.SubgraphsLength()
    if n_sub < 1:
        raise ConvertError("the model has no subgraph")
    sg = model.Subgraphs(0)
    n_buffers = model.BuffersLength()

    def buffer_bytes(bi, label):
        if bi == 0:
            return None
        if bi < 0 or bi >= n_buffers:
            raise ConvertError("%s: buffer %d does not exist (%d buffers)" % (label, bi, n_buffers))
        buf = model.Buffers(bi)
        off = buf.Offset() if hasattr(buf, "Offset") else 0
        if off > 1:  # large models keep constants after the flatbuffer
            size = buf.Size()
            if off + size > len(data):
                raise ConvertError("%s: data [%d, %d) outside the file" % (label, off, off + size))
            return data[off:off + size]
        if buf.DataIsNone() or buf.DataLength() == 0:
            return None
        return buf.DataAsNumpy().tobytes()

    tensors = []
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        name = _decode(t.Name())
        tname = type_names.get(t.Type(), "type %d" % t.Type())
        shape = tuple(_np_vec(t, "Shape"))
        label = "tensor %d %r" % (i, name)
        if any(d < 0 for d in shape):
            raise ConvertError("%s: negative dimension in shape %r" % (label, shape))
        raw = buffer_bytes(t.Buffer(), label)
        arr = None
        if raw is not None:
            if tname not in _NP_TYPES:
                raise ConvertError("%s: constant of type %s cannot be read" % (label, tname))
            dt = np.dtype(_NP_TYPES[tname])
            numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
            if len(raw) != numel * dt.itemsize:
                raise ConvertError("%s: %d bytes of data for shape %r of %s (%d expected)"
                                   % (label, len(raw), shape, tname, numel * dt.itemsize))
            arr = np.frombuffer(raw, dtype=dt).reshape(shape).astype(dt.newbyteorder("="))
        scales = zps = None
        qdim = 0
        q = t.Quantization()
        if q is not None and not q.ScaleIsNone() and q.ScaleLength() > 0:
            scales = np.array(q.ScaleAsNumpy(), dtype=np.float32)
            zps = (np.array(q.ZeroPointAsNumpy(), dtype=np.int64)
                   if not q.ZeroPointIsNone() and q.ZeroPointLength() else
                   np.zeros(scales.size, np.int64))
            qdim = int(q.QuantizedDimension())
        tensors.append(TflTensor(i, name, tname, shape, arr, scales, zps, qdim,
                                 t.Sparsity() is not None))

    def idx_list(obj, what, label, allow_absent):
        out = _np_vec(obj, what)
        for v in out:
            if not (0 <= v < len(tensors)) and not (allow_absent and v == -1):
                raise ConvertError("%s: tensor index %d does not exist (%d tensors)"
                                   % (label, v, len(tensors)))
        return out

    ops = []
    n_codes = model.OperatorCodesLength()
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        ci = op.OpcodeIndex()
        if ci >= n_codes:
            raise ConvertError("op %d: operator code %d does not exist (%d codes)"
                               % (i, ci, n_codes))
        code = model.OperatorCodes(ci)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = op_names.get(builtin, "BUILTIN_%d" % builtin)
        if name == "CUSTOM":
            name = "CUSTOM(%s)" % _decode(code.CustomCode())
        label = "op %d (%s)" % (i, name)
        inputs = idx_list(op, "Inputs", label, True)
        outputs = idx_list(op, "Outputs", label, False)
        opt_name = option_names.get(op.BuiltinOptionsType(), None)
        options = None
        table = op.BuiltinOptions()
        if table is not None and opt_name not in (None, "NONE"):
            cls = getattr(tflite, opt_name, None)
            options = {}
            if cls is not None:
                obj = cls()
                obj.Init(table.Bytes, table.Pos)
                for field in _OPTION_FIELDS.get(opt_name, ()):
                    options[field] = getattr(obj, field)()
        ops.append(TflOp(i, name, inputs, outputs, options, opt_name))

    inputs = idx_list(sg, "Inputs", "subgraph inputs", False)
    outputs = idx_list(sg, "Outputs", "subgraph outputs", False)
    return TflGraph(tensors, ops, inputs, outputs, _decode(model.Description()), n_sub,
                    model.Version())


# ---------------------------------------------------------------------------
# Conversion

SUPPORTED_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D",
                 "MAX_POOL_2D", "MEAN", "ADD", "SOFTMAX", "RESHAPE", "SQUEEZE", "ARG_MAX",
                 "QUANTIZE", "DEQUANTIZE")

# options type each op must carry (if it carries one)
_OPTIONS = {"FULLY_CONNECTED": "FullyConnectedOptions", "CONV_2D": "Conv2DOptions",
            "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions", "AVERAGE_POOL_2D": "Pool2DOptions",
            "MAX_POOL_2D": "Pool2DOptions", "MEAN": "ReducerOptions", "ADD": "AddOptions",
            "SOFTMAX": "SoftmaxOptions", "RESHAPE": "ReshapeOptions",
            "SQUEEZE": "SqueezeOptions", "ARG_MAX": "ArgMaxOptions"}
# ops whose options are needed: no defaults stand in for them
_NEED_OPTIONS = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "SOFTMAX")

_U8_FIELD = 255     # stride, filter and padding are u8 fields of a .tam layer
_DIM_MAX = 65535
TRAINABLE_CHOICES = ("none", "last", "all")


class _OpError(Exception):
    pass


def _plural(n, word):
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


def _positions(idx):
    return ("op " if len(idx) == 1 else "ops ") + ", ".join(str(i) for i in idx)


class _Converter:
    def __init__(self, graph, trainable):
        self.g = graph
        self.trainable = trainable
        self.tensors = []           # tam.Tensor, in id order
        self.layers = []
        self.tam_of = {}            # tflite tensor index -> tam id (activations, constants)
        self.weight_layers = []     # (layer, weights id, bias id): candidates for --trainable
        self.in_map = {}            # float model input -> int8 tensor after its QUANTIZE
        self.out_map = {}           # float model output -> int8 tensor before its DEQUANTIZE
        self.skip = set()           # folded ops

    # ---- tensors

    def T(self, i):
        return self.g.tensors[i]

    def _new(self, **kw):
        t = tam.Tensor(len(self.tensors), **kw)
        self.tensors.append(t)
        return t.id

    def _check_shape(self, t):
        if len(t.shape) > 4:
            raise _OpError("%s has %d dimensions %r (.tam allows 4)" % (t.label(), len(t.shape),
                                                                        t.shape))
        if any(d < 1 or d > _DIM_MAX for d in t.shape):
            raise _OpError("%s has shape %r: every dimension must be 1..65535" % (t.label(),
                                                                                   t.shape))

    def _quant(self, t):
        """(scale, zero_point) of a per-tensor quantized int8 tensor."""
        if t.scales is None:
            raise _OpError("%s is int8 without quantization parameters" % t.label())
        if t.scales.size != 1:
            raise _OpError("%s has %d scales: activations must be quantized per tensor"
                           % (t.label(), t.scales.size))
        s, z = float(t.scales[0]), int(t.zero_points[0])
        if not (s > 0 and math.isfinite(s)):
            raise _OpError("%s has scale %r (must be finite and > 0)" % (t.label(), s))
        if not I8_MIN <= z <= I8_MAX:
            raise _OpError("%s has zero point %d outside int8" % (t.label(), z))
        return s, z

    def q8(self, i):
        """(scale, zero_point) of the int8 tensor i (an op's input or output)."""
        t = self.T(i)
        if t.type != "INT8":
            raise _OpError("%s is %s, not int8" % (t.label(), t.type))
        return self._quant(t)

    def value(self, i):
        """The tam id of an int8 value (activation or constant operand)."""
        if i in self.tam_of:
            return self.tam_of[i]
        t = self.T(i)
        if t.type != "INT8":
            raise _OpError("%s is %s, not int8" % (t.label(), t.type))
        self._check_shape(t)
        s, z = self._quant(t)
        if t.data is None:
            tid = self._new(dtype="int8", shape=t.shape, scale=s, zero_point=z)
        else:
            tid = self._new(dtype="int8", data=t.data.reshape(t.shape), role="const", scale=s,
                            zero_point=z)
        self.tam_of[i] = tid
        return tid

    def output(self, i, dtype="int8"):
        """The tam id of an op's output activation (written once)."""
        if i in self.tam_of:
            raise _OpError("%s is written twice" % self.T(i).label())
        t = self.T(i)
        if t.data is not None:
            raise _OpError("%s is an op output with constant data" % t.label())
        if dtype == "int8":
            return self.value(i)
        self._check_shape(t)
        tid = self._new(dtype=dtype, shape=t.shape)
        self.tam_of[i] = tid
        return tid

    def const_ints(self, i, what):
        t = self.T(i)
        if t.data is None or t.type not in ("INT32", "INT64"):
            raise _OpError("the %s (%s) must be a constant int32 tensor" % (what, t.label()))
        return [int(v) for v in t.data.reshape(-1)]

    # ---- weighted layers

    def weights(self, op, wi, n_out, qdim):
        """Weights tensor: int8, symmetric, 1 or n_out scales along qdim. Returns
        (tam id, float32 scales as an array of 1 or n_out)."""
        t = self.T(wi)
        if t.data is None:
            raise _OpError("the weights (%s) are not a constant" % t.label())
        if t.type != "INT8":
            raise _OpError("the weights (%s) are %s; only int8 weights are supported"
                           % (t.label(), t.type))
        if t.sparse:
            raise _OpError("the weights (%s) are sparse" % t.label())
        if t.scales is None:
            raise _OpError("the weights (%s) have no quantization parameters" % t.label())
        if np.any(t.zero_points != 0):
            raise _OpError("the weights (%s) are not symmetric (zero points %s)"
                           % (t.label(), sorted(set(t.zero_points.tolist()))[:4]))
        scales = t.scales
        if not np.all(np.isfinite(scales)) or np.any(scales <= 0):
            raise _OpError("the weights (%s) have a scale that is not finite and > 0" % t.label())
        if scales.size not in (1, n_out):
            raise _OpError("the weights (%s) have %d scales for %d output channels"
                           % (t.label(), scales.size, n_out))
        if scales.size > 1 and t.qdim != qdim:
            raise _OpError("the weights (%s) are quantized along dimension %d; %s needs %d"
                           % (t.label(), t.qdim, op.name, qdim))
        self._check_shape(t)
        key = ("w", wi)
        if key in self.tam_of:
            return self.tam_of[key], scales
        if scales.size > 1:
            sid = self._new(dtype="float32", data=scales.astype(np.float32), role="scales")
            tid = self._new(dtype="int8", data=t.data.reshape(t.shape), role="weights", axis=qdim,
                            scales=sid)
        else:
            tid = self._new(dtype="int8", data=t.data.reshape(t.shape), role="weights",
                            scale=float(scales[0]))
        self.tam_of[key] = tid
        return tid, scales

    def bias(self, op, bi, n_out, in_scale, w_scales):
        if bi < 0:
            scale = f32(f32(in_scale) * f32(w_scales[0])) if w_scales.size == 1 else 0.0
            return self._new(dtype="int32", data=np.zeros(n_out, np.int32), role="bias",
                             scale=scale)
        t = self.T(bi)
        if t.data is None:
            raise _OpError("the bias (%s) is not a constant" % t.label())
        if t.type != "INT32":
            raise _OpError("the bias (%s) is %s; int8 models have int32 biases"
                           % (t.label(), t.type))
        if t.numel != n_out:
            raise _OpError("the bias (%s) has %d elements for %d output channels"
                           % (t.label(), t.numel, n_out))
        if t.zero_points is not None and np.any(t.zero_points != 0):
            raise _OpError("the bias (%s) has a nonzero zero point" % t.label())
        key = ("b", bi)
        if key in self.tam_of:
            return self.tam_of[key]
        scale = float(t.scales[0]) if t.scales is not None and t.scales.size == 1 else 0.0
        tid = self._new(dtype="int32", data=t.data.reshape(n_out), role="bias", scale=scale)
        self.tam_of[key] = tid
        return tid

    def requant(self, mult, shift):
        return (self._new(dtype="int32", data=mult, role="mult"),
                self._new(dtype="int32", data=shift, role="shift"))

    # ---- helpers

    @staticmethod
    def opt(op, name, default):
        if op.options is None:
            return default
        return op.options.get(name, default)

    def act_clamp(self, op, out_q):
        return activation_range(self.opt(op, "FusedActivationFunction", ACT_NONE), *out_q)

    def nhwc(self, t, what):
        if len(t.shape) != 4:
            raise _OpError("the %s (%s) has shape %r; NHWC (4 dimensions) is needed"
                           % (what, t.label(), t.shape))
        if t.shape[0] != 1:
            raise _OpError("the %s (%s) has batch %d; only batch 1 is supported"
                           % (what, t.label(), t.shape[0]))
        return t.shape

    def geometry(self, op, in_shape, out_shape, kh, kw):
        """stride, padding (top, bottom, left, right) of a spatial op; checks
        dilation 1, the .tam u8 fields and the output size."""
        sh = self.opt(op, "StrideH", 1)
        sw = self.opt(op, "StrideW", 1)
        if op.options is not None and "DilationHFactor" in op.options:
            dh, dw = op.options["DilationHFactor"], op.options["DilationWFactor"]
            if (dh, dw) != (1, 1):
                raise _OpError("dilation %dx%d is not supported (dilation 1 only)" % (dh, dw))
        if not (1 <= sh <= _U8_FIELD and 1 <= sw <= _U8_FIELD):
            raise _OpError("stride %dx%d is not supported (1..255)" % (sh, sw))
        if not (1 <= kh <= _U8_FIELD and 1 <= kw <= _U8_FIELD):
            raise _OpError("filter %dx%d is not supported (1..255)" % (kh, kw))
        pad = self.opt(op, "Padding", PADDING_SAME)
        if pad not in (PADDING_SAME, PADDING_VALID):
            raise _OpError("padding %r is not SAME or VALID" % pad)
        oh, pt, pb = padding(pad, in_shape[1], kh, sh)
        ow, pl, pr = padding(pad, in_shape[2], kw, sw)
        if oh < 1 or ow < 1:
            raise _OpError("a %dx%d filter does not fit the %dx%d input with VALID padding"
                           % (kh, kw, in_shape[1], in_shape[2]))
        if (oh, ow) != tuple(out_shape[1:3]):
            raise _OpError("output is %dx%d, but input %dx%d, filter %dx%d, stride %dx%d and %s "
                           "padding give %dx%d" % (out_shape[1], out_shape[2], in_shape[1],
                                                   in_shape[2], kh, kw, sh, sw,
                                                   "SAME" if pad == PADDING_SAME else "VALID",
                                                   oh, ow))
        if max(pt, pb, pl, pr) > _U8_FIELD:
            raise _OpError("padding %r does not fit .tam's u8 fields" % ((pt, pb, pl, pr),))
        return (sh, sw), (pt, pb, pl, pr)

    def n_inputs(self, op, lo, hi=None):
        hi = lo if hi is None else hi
        if not lo <= len(op.inputs) <= hi or len(op.outputs) != 1:
            raise _OpError("has %d inputs and %d outputs" % (len(op.inputs), len(op.outputs)))
        for k, i in enumerate(op.inputs[:lo]):
            if i < 0:
                raise _OpError("input %d is missing" % k)

    # ---- ops

    def op_fully_connected(self, op):
        self.n_inputs(op, 2, 3)
        x, w = self.T(op.inputs[0]), self.T(op.inputs[1])
        bi = op.inputs[2] if len(op.inputs) > 2 else -1
        y = self.T(op.outputs[0])
        if self.opt(op, "WeightsFormat", 0) != 0:
            raise _OpError("shuffled weights format is not supported")
        if len(w.shape) != 2:
            raise _OpError("weights shape %r; (n_out, n_in) needed" % (w.shape,))
        n_out, n_in = w.shape
        if x.numel % n_in:
            raise _OpError("input %r has %d elements, not a multiple of n_in %d"
                           % (x.shape, x.numel, n_in))
        if y.numel != x.numel // n_in * n_out:
            raise _OpError("output %r, expected %d elements" % (y.shape, x.numel // n_in * n_out))
        in_q, out_q = self.q8(op.inputs[0]), self.q8(op.outputs[0])
        xin = self.value(op.inputs[0])
        wid, ws = self.weights(op, op.inputs[1], n_out, 0)
        bid = self.bias(op, bi, n_out, in_q[0], ws)
        mult, shift = fc_multipliers(in_q[0], ws, out_q[0], n_out)
        mid, sid = self.requant(mult, shift)
        lo, hi = self.act_clamp(op, out_q)
        yid = self.output(op.outputs[0])
        layer = tam.Layer("fully_connected", input=xin, output=yid, weights=wid, bias=bid,
                          mult=mid, shift=sid, act_min=lo, act_max=hi)
        self.layers.append(layer)
        self.weight_layers.append((layer, wid, bid))

    def _conv(self, op, depthwise):
        self.n_inputs(op, 2, 3)
        x, w, y = self.T(op.inputs[0]), self.T(op.inputs[1]), self.T(op.outputs[0])
        bi = op.inputs[2] if len(op.inputs) > 2 else -1
        xs = self.nhwc(x, "input")
        ys = self.nhwc(y, "output")
        if len(w.shape) != 4:
            raise _OpError("weights shape %r; 4 dimensions needed" % (w.shape,))
        ic, oc = xs[3], ys[3]
        if depthwise:
            one, kh, kw, woc = w.shape
            if one != 1 or woc != oc:
                raise _OpError("weights %r do not match (1, KH, KW, %d)" % (w.shape, oc))
            if oc % ic:
                raise _OpError("%d output channels are not a multiple of %d input channels"
                               % (oc, ic))
            dm = oc // ic
            opt_dm = self.opt(op, "DepthMultiplier", dm)
            if opt_dm != dm:
                raise _OpError("depth_multiplier option %d, but the shapes give %d (%d -> %d "
                               "channels)" % (opt_dm, dm, ic, oc))
        else:
            woc, kh, kw, wic = w.shape
            if woc != oc:
                raise _OpError("weights %r give %d output channels, the output has %d"
                               % (w.shape, woc, oc))
            if wic != ic:
                raise _OpError("weights %r read %d input channels, the input has %d%s"
                               % (w.shape, wic, ic, " (grouped convolution is not supported)"
                                  if ic % wic == 0 else ""))
        stride, pads = self.geometry(op, xs, ys, kh, kw)
        in_q, out_q = self.q8(op.inputs[0]), self.q8(op.outputs[0])
        xin = self.value(op.inputs[0])
        wid, ws = self.weights(op, op.inputs[1], oc, 3 if depthwise else 0)
        bid = self.bias(op, bi, oc, in_q[0], ws)
        mid, sid = self.requant(*conv_multipliers(in_q[0], ws, out_q[0], oc))
        lo, hi = self.act_clamp(op, out_q)
        yid = self.output(op.outputs[0])
        layer = tam.Layer("depthwise_conv2d" if depthwise else "conv2d", input=xin, output=yid,
                          weights=wid, bias=bid, mult=mid, shift=sid, stride=stride,
                          filter=(kh, kw), padding=pads, depth_multiplier=dm if depthwise else 0,
                          act_min=lo, act_max=hi)
        self.layers.append(layer)
        self.weight_layers.append((layer, wid, bid))

    def op_conv_2d(self, op):
        self._conv(op, False)

    def op_depthwise_conv_2d(self, op):
        self._conv(op, True)

    def _pool(self, op, kind):
        self.n_inputs(op, 1)
        x, y = self.T(op.inputs[0]), self.T(op.outputs[0])
        xs, ys = self.nhwc(x, "input"), self.nhwc(y, "output")
        if xs[3] != ys[3]:
            raise _OpError("%d channels in, %d out" % (xs[3], ys[3]))
        in_q, out_q = self.q8(op.inputs[0]), self.q8(op.outputs[0])
        if (f32(in_q[0]), in_q[1]) != (f32(out_q[0]), out_q[1]):
            raise _OpError("input quantization %r differs from the output's %r; int8 pooling "
                           "needs them equal (as TFLite's does)" % (in_q, out_q))
        kh = self.opt(op, "FilterHeight", 0)
        kw = self.opt(op, "FilterWidth", 0)
        stride, pads = self.geometry(op, xs, ys, kh, kw)
        lo, hi = self.act_clamp(op, out_q)
        xin = self.value(op.inputs[0])
        yid = self.output(op.outputs[0])
        self.layers.append(tam.Layer(kind, input=xin, output=yid, stride=stride, filter=(kh, kw),
                                     padding=pads, act_min=lo, act_max=hi))

    def op_average_pool_2d(self, op):
        self._pool(op, "avg_pool")

    def op_max_pool_2d(self, op):
        self._pool(op, "max_pool")

    def op_mean(self, op):
        """MEAN over H and W of an NHWC tensor is TFLite Micro's
        QuantizedMeanOrSum: requant(sum(x - in_zp), m, s) + out_zp with
        mean_multiplier's (m, s). A depthwise_conv2d with one weight of 1 per
        channel, a full-image window and a zero bias computes exactly that sum,
        so the layer is that depthwise convolution (it costs H x W x C bytes
        of ones)."""
        self.n_inputs(op, 2)
        x, y = self.T(op.inputs[0]), self.T(op.outputs[0])
        xs = self.nhwc(x, "input")
        axes = sorted(set(a % 4 for a in self.const_ints(op.inputs[1], "axis")))
        if axes != [1, 2]:
            raise _OpError("MEAN over axes %s is not supported (only over H and W: [1, 2])"
                           % self.const_ints(op.inputs[1], "axis"))
        _, h, w, c = xs
        keep = bool(self.opt(op, "KeepDims", False))
        want = (1, 1, 1, c) if keep else (1, c)
        if tuple(y.shape) != want:
            raise _OpError("output shape %r, expected %r" % (y.shape, want))
        if h > _U8_FIELD or w > _U8_FIELD:
            raise _OpError("MEAN over %dx%d: at most 255x255 is supported" % (h, w))
        in_q, out_q = self.q8(op.inputs[0]), self.q8(op.outputs[0])
        m, s = mean_multiplier(in_q[0], out_q[0], h * w)
        xin = self.value(op.inputs[0])
        wid = self._new(dtype="int8", data=np.ones((1, h, w, c), np.int8), role="weights",
                        scale=1.0)
        bid = self._new(dtype="int32", data=np.zeros(c, np.int32), role="bias")
        mid, sid = self.requant(np.full(c, m, np.int32), np.full(c, s, np.int32))
        if keep:
            yid = self.output(op.outputs[0])
        else:
            yid = self._new(dtype="int8", shape=(1, 1, 1, c), scale=out_q[0], zero_point=out_q[1])
        self.layers.append(tam.Layer("depthwise_conv2d", input=xin, output=yid, weights=wid,
                                     bias=bid, mult=mid, shift=sid, stride=(1, 1), filter=(h, w),
                                     padding=(0, 0, 0, 0), depth_multiplier=1))
        if not keep:
            self.layers.append(tam.Layer("reshape", input=yid, output=self.output(op.outputs[0])))

    def op_add(self, op):
        self.n_inputs(op, 2)
        a, b, y = self.T(op.inputs[0]), self.T(op.inputs[1]), self.T(op.outputs[0])
        if tuple(a.shape) != tuple(b.shape) or tuple(a.shape) != tuple(y.shape):
            raise _OpError("shapes %r + %r -> %r: broadcasting is not supported (same shapes "
                           "only)" % (a.shape, b.shape, y.shape))
        qa, qb, qy = self.q8(op.inputs[0]), self.q8(op.inputs[1]), self.q8(op.outputs[0])
        params = add_params(qa[0], qb[0], qy[0])
        lo, hi = self.act_clamp(op, qy)
        ia, ib = self.value(op.inputs[0]), self.value(op.inputs[1])
        yid = self.output(op.outputs[0])
        self.layers.append(tam.Layer("add", input=ia, input2=ib, output=yid, act_min=lo,
                                     act_max=hi, params=params))

    def op_softmax(self, op):
        self.n_inputs(op, 1)
        x, y = self.T(op.inputs[0]), self.T(op.outputs[0])
        if tuple(x.shape) != tuple(y.shape):
            raise _OpError("input %r and output %r differ in shape" % (x.shape, y.shape))
        if not x.shape:
            raise _OpError("a scalar input")
        depth = x.shape[-1]
        if depth > SOFTMAX_MAX_DEPTH:
            raise _OpError("softmax over %d values: at most %d are supported"
                           % (depth, SOFTMAX_MAX_DEPTH))
        in_q, out_q = self.q8(op.inputs[0]), self.q8(op.outputs[0])
        if (f32(out_q[0]), out_q[1]) != (1.0 / 256, -128):
            raise _OpError("output quantization %r; int8 SOFTMAX needs scale 1/256, zero point "
                           "-128" % (out_q,))
        params = softmax_params(in_q[0], self.opt(op, "Beta", 1.0))
        xin = self.value(op.inputs[0])
        yid = self.output(op.outputs[0])
        self.layers.append(tam.Layer("softmax", input=xin, output=yid, params=params))

    def op_reshape(self, op):
        if len(op.inputs) < 1 or op.inputs[0] < 0 or len(op.outputs) != 1:
            raise _OpError("has %d inputs and %d outputs" % (len(op.inputs), len(op.outputs)))
        x, y = self.T(op.inputs[0]), self.T(op.outputs[0])
        if x.numel != y.numel:
            raise _OpError("%d elements in, %d out" % (x.numel, y.numel))
        xin = self.value(op.inputs[0])
        yid = self.output(op.outputs[0])
        self.layers.append(tam.Layer("reshape", input=xin, output=yid))

    op_squeeze = op_reshape

    def op_arg_max(self, op):
        self.n_inputs(op, 2)
        x, y = self.T(op.inputs[0]), self.T(op.outputs[0])
        if x.type != "INT8":
            raise _OpError("input %s is %s, not int8" % (x.label(), x.type))
        if not x.shape:
            raise _OpError("a scalar input")
        axes = self.const_ints(op.inputs[1], "axis")
        if len(axes) != 1 or not -len(x.shape) <= axes[0] < len(x.shape):
            raise _OpError("axis %r for a %d-D input" % (axes, len(x.shape)))
        axis = axes[0] % len(x.shape)
        if axis != len(x.shape) - 1:
            raise _OpError("ARG_MAX over axis %d of %r: only the last axis is supported"
                           % (axis, x.shape))
        if y.type not in ("INT32", "INT64"):
            raise _OpError("output type %s (int32 or int64 needed)" % y.type)
        if y.numel * x.shape[axis] != x.numel:
            raise _OpError("output %r for input %r" % (y.shape, x.shape))
        xin = self.value(op.inputs[0])
        yid = self.output(op.outputs[0], "int32")    # int64 indices: same values as int32
        self.layers.append(tam.Layer("argmax", input=xin, output=yid, params=(axis,)))

    # ---- driver

    def check_ops(self):
        g = self.g
        bad = {}
        for op in g.ops:
            if op.name not in SUPPORTED_OPS:
                bad.setdefault(op.name, []).append(op.index)
        if bad:
            parts = ["%s at %s" % (name, _positions(idx)) for name, idx in bad.items()]
            raise ConvertError("unsupported %s: %s. Supported: %s"
                               % ("op" if sum(len(v) for v in bad.values()) == 1 else "ops",
                                  "; ".join(parts), ", ".join(SUPPORTED_OPS)))

    def fold_edges(self):
        """QUANTIZE from a float32 model input and DEQUANTIZE into a float32 model
        output become the io scale and zero point of the int8 tensor between."""
        g = self.g
        errors = []
        consumers = {}
        for op in g.ops:
            for i in op.inputs:
                if i >= 0:
                    consumers.setdefault(i, []).append(op)
        for op in g.ops:
            if op.name not in ("QUANTIZE", "DEQUANTIZE"):
                continue
            if len(op.inputs) != 1 or len(op.outputs) != 1:
                errors.append("%s: has %d inputs and %d outputs"
                              % (op.label(), len(op.inputs), len(op.outputs)))
                continue
            src, dst = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
            if op.name == "QUANTIZE":
                if src.type == "INT8" and dst.type == "INT8":
                    errors.append("%s: QUANTIZE from int8 to int8 (a requantization) is not "
                                  "supported" % op.label())
                elif src.index not in g.inputs or dst.type != "INT8" or src.type != "FLOAT32":
                    errors.append("%s: QUANTIZE is only supported from a float32 model input "
                                  "to int8 (here %s %s -> %s %s)"
                                  % (op.label(), src.type, src.name, dst.type, dst.name))
                elif len(consumers.get(src.index, ())) != 1 or src.index in g.outputs:
                    errors.append("%s: the float32 model input %s is used by other ops too"
                                  % (op.label(), src.label()))
                else:
                    self.in_map[src.index] = dst.index
                    self.skip.add(op.index)
            else:
                if src.type != "INT8" or dst.type != "FLOAT32" or dst.index not in g.outputs:
                    errors.append("%s: DEQUANTIZE is only supported from int8 into a float32 "
                                  "model output (here %s %s -> %s %s)"
                                  % (op.label(), src.type, src.name, dst.type, dst.name))
                elif consumers.get(dst.index):
                    errors.append("%s: the float32 model output %s is also used by other ops"
                                  % (op.label(), dst.label()))
                else:
                    self.out_map[dst.index] = src.index
                    self.skip.add(op.index)
        if errors:
            raise ConvertError("; ".join(errors))

    def check_types(self):
        """One clear message for a model that is not int8 throughout."""
        g = self.g
        seen = {}
        for op in g.ops:
            if op.index in self.skip:
                continue
            for i in list(op.inputs) + list(op.outputs):
                if i < 0:
                    continue
                t = g.tensors[i]
                if t.data is not None and t.type in ("INT32", "INT64") and op.name in (
                        "RESHAPE", "ARG_MAX", "MEAN", "SQUEEZE"):
                    continue    # shape and axis operands
                if op.name == "ARG_MAX" and i in op.outputs:
                    continue
                if t.data is not None and op.name in ("FULLY_CONNECTED", "CONV_2D",
                                                      "DEPTHWISE_CONV_2D") and i != op.inputs[0]:
                    continue    # weights and bias: checked per op
                if t.type != "INT8":
                    seen.setdefault(t.type, (op, t))
        for i in list(g.inputs) + list(g.outputs):
            t = g.tensors[i]
            if i in self.in_map or i in self.out_map:
                continue
            if t.type not in ("INT8", "INT32", "INT64"):
                seen.setdefault(t.type, (None, t))
        if not seen:
            return
        kind, (op, t) = sorted(seen.items())[0]
        where = ("%s uses" % op.label()) if op else "the model's inputs/outputs include"
        hint = {"FLOAT32": "a float32 model (or dynamic-range quantized: int8 weights, float "
                           "activations)",
                "FLOAT16": "a float16 model",
                "UINT8": "a uint8 (legacy quantization) model",
                "INT16": "an int16-activation (16x8 quantized) model"}.get(
                    kind, "a model with %s activations" % kind.lower())
        raise ConvertError(
            "this is %s: %s %s, which is %s. tinyadapt needs int8 activations throughout: convert "
            "with full-integer int8 quantization (TFLiteConverter with "
            "optimizations=[tf.lite.Optimize.DEFAULT], a representative_dataset and "
            "target_spec.supported_ops=[tf.lite.OpsSet.TFLITE_BUILTINS_INT8]); a float32 input "
            "or output is fine (its QUANTIZE/DEQUANTIZE is folded)"
            % (hint, where, t.label(), t.type.lower()))

    def run(self):
        g = self.g
        self.check_ops()
        self.fold_edges()
        self.check_types()
        errors = []

        # model inputs first (ids 0..), in subgraph order
        io_in = []
        for i in g.inputs:
            j = self.in_map.get(i, i)
            t = g.tensors[j]
            try:
                if t.data is not None:
                    raise _OpError("is a constant")
                if len(t.shape) >= 2 and t.shape[0] != 1:
                    raise _OpError("has batch %d (shape %r); only batch 1 is supported"
                                   % (t.shape[0], t.shape))
                tid = self.value(j)
                s, z = self._quant(t)
                io_in.append(tam.IOSpec(tid, s, z))
            except _OpError as e:
                errors.append("model input %s: %s" % (t.label(), e))

        for op in g.ops:
            if op.index in self.skip:
                continue
            if op.options is not None and op.options_name != _OPTIONS.get(op.name):
                errors.append("%s: carries %s, not %s" % (op.label(), op.options_name,
                                                          _OPTIONS.get(op.name)))
                continue
            if op.options is None and op.name in _NEED_OPTIONS:
                errors.append("%s: its options (%s) are missing" % (op.label(), _OPTIONS[op.name]))
                continue
            try:
                getattr(self, "op_" + op.name.lower())(op)
            except (_OpError, ConvertError) as e:
                errors.append("%s: %s" % (op.label(), e))

        io_out = []
        for i in g.outputs:
            j = self.out_map.get(i, i)
            t = g.tensors[j]
            if j not in self.tam_of:
                if not errors:
                    errors.append("model output %s is computed by no op" % t.label())
                continue
            tid = self.tam_of[j]
            if len(t.shape) >= 2 and t.shape[0] != 1:
                errors.append("model output %s has batch %d (shape %r); only batch 1 is "
                              "supported" % (t.label(), t.shape[0], t.shape))
                continue
            if self.tensors[tid].dtype == "int32":
                io_out.append(tam.IOSpec(tid, 1.0, 0))      # class indices
            else:
                io_out.append(tam.IOSpec(tid, self.tensors[tid].scale,
                                         self.tensors[tid].zero_point))
        if errors:
            raise ConvertError("cannot convert: %s:\n  %s"
                               % (_plural(len(errors), "problem"), "\n  ".join(errors)))

        chosen = []
        if self.trainable == "all":
            chosen = self.weight_layers
        elif self.trainable == "last" and self.weight_layers:
            chosen = self.weight_layers[-1:]
        for _, wid, bid in chosen:
            self.tensors[wid].trainable = True
            self.tensors[bid].trainable = True
        return io_in, io_out


def _metadata(graph, source, sha256):
    meta = {"converter": CONVERTER, "converter_version": CONVERTER_VERSION,
            "source_format": "tflite"}
    if source:
        meta["source"] = os.path.basename(source)
    if sha256:
        meta["source_sha256"] = sha256
    if graph.description:
        meta["description"] = graph.description[:512]
    meta["inputs"] = [graph.tensors[i].name for i in graph.inputs]
    meta["outputs"] = [graph.tensors[i].name for i in graph.outputs]
    text = json.dumps(meta, sort_keys=True, separators=(",", ":"))
    if len(text.encode("utf-8")) > 4096:
        del meta["inputs"], meta["outputs"]
        text = json.dumps(meta, sort_keys=True, separators=(",", ":"))
    return text


def convert(data, source=None, trainable="last", log=None):
    """Convert .tflite bytes to a `tam.Model`. `trainable`: which weights and
    biases get the TRAINABLE flag: "last" (the last fully-connected or
    convolution layer; the default, as convert_torch's), "all" or "none".
    `log(str)` receives a progress line per stage.
    `source` (a file name) goes into the metadata. Raises ConvertError."""
    return _convert(data, source, trainable, log)[0]


def _convert(data, source, trainable, log):
    if trainable not in TRAINABLE_CHOICES:
        raise ConvertError("trainable must be one of %s, not %r"
                           % (", ".join(TRAINABLE_CHOICES), trainable))
    log = log or (lambda msg: None)
    data = bytes(data)
    graph = read_tflite(data)
    counts = {}
    for op in graph.ops:
        counts[op.name] = counts.get(op.name, 0) + 1
    log("parsed: %s, %s (%s)%s" % (
        _plural(len(graph.ops), "op"), _plural(len(graph.tensors), "tensor"),
        ", ".join("%s x%d" % kv for kv in counts.items()) or "no ops",
        "; %d subgraphs, converting the first" % graph.n_subgraphs
        if graph.n_subgraphs > 1 else ""))
    conv = _Converter(graph, trainable)
    io_in, io_out = conv.run()
    folded = len(conv.skip)
    log("mapped: %s, %s%s" % (_plural(len(conv.layers), "layer"),
                              _plural(len(conv.tensors), "tensor"),
                              ", %d QUANTIZE/DEQUANTIZE folded into the io scales" % folded
                              if folded else ""))
    model = tam.Model(conv.tensors, conv.layers, io_in, io_out,
                      metadata=_metadata(graph, source, hashlib.sha256(data).hexdigest()))
    try:
        image = tam.to_bytes(model)     # the board loader's checks
    except tam.TamError as e:
        raise ConvertError("the converted model breaks a .tam rule: %s" % e) from None
    n_train = sum(1 for t in conv.tensors if t.trainable)
    log("checked: the board loader accepts it (%d bytes, %s)"
        % (len(image), _plural(n_train, "trainable tensor")))
    return model, image


def convert_bytes(data, source=None, trainable="last", log=None):
    """Convert .tflite bytes and return the .tam image (bytes)."""
    return _convert(data, source, trainable, log)[1]


def convert_file(src, dst=None, trainable="last", log=None):
    """Convert the .tflite file `src` to the .tam file `dst` (default: `src` with
    the suffix .tam), written atomically. Returns the tam.Model."""
    log = log or (lambda msg: None)
    if dst is None:
        dst = os.path.splitext(src)[0] + ".tam"
    try:
        with open(src, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConvertError("cannot read %s: %s" % (src, e.strerror or e)) from None
    log("reading %s (%d bytes)" % (src, len(data)))
    model, image = _convert(data, src, trainable, log)
    try:
        tam.save(model, dst)
    except OSError as e:
        raise ConvertError("cannot write %s: %s" % (dst, e.strerror or e)) from None
    log("wrote %s (%d bytes)" % (dst, len(image)))
    return model
