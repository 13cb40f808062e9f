"""Build int8 .tflite models in memory, without TensorFlow, and run them through
TFLite Micro (the bit-exact reference of docs/DESIGN "Integer semantics") and
LiteRT.

Models are written from the TFLite schema with the generated flatbuffer
classes of the ``tflite`` package. Quantization is stored as TFLite stores it:
float32 scales, int64 zero points, a quantized dimension (0 for CONV_2D and
FULLY_CONNECTED weights, 3 for DEPTHWISE_CONV_2D weights), and int32 biases
with scale in_scale * w_scale[c] and zero point 0, as the converter writes
them (TFLM's per-tensor FULLY_CONNECTED checks the bias scale).

``ModelBuilder`` builds any small graph; the ``*_model`` functions build one
op each and return the model bytes. ``run_tflm`` / ``run_litert`` run a model
on a list of numpy inputs and return the list of outputs.
"""

import numpy as np

import flatbuffers
import tflite
from tflite.ActivationFunctionType import ActivationFunctionType
from tflite.BuiltinOperator import BuiltinOperator
from tflite.BuiltinOptions import BuiltinOptions
from tflite.Padding import Padding
from tflite.TensorType import TensorType

import tflite_quant as tq

ACT = {"NONE": ActivationFunctionType.NONE, "RELU": ActivationFunctionType.RELU,
       "RELU6": ActivationFunctionType.RELU6}
PADDING = {"SAME": Padding.SAME, "VALID": Padding.VALID}
_TYPES = {np.dtype(np.int8): TensorType.INT8, np.dtype(np.int32): TensorType.INT32,
          np.dtype(np.float32): TensorType.FLOAT32, np.dtype(np.int64): TensorType.INT64}
SCHEMA_VERSION = 3
_DATA_ALIGN = 16  # constant buffers aligned as the converter does (TFLM reads them in place)


def _act(activation):
    return ACT[activation] if isinstance(activation, str) else int(activation)


def _pad(padding):
    return PADDING[padding] if isinstance(padding, str) else int(padding)


# ---- options of each op: (BuiltinOperator, BuiltinOptions type, writer) ----

def _fc_options(b, activation="NONE"):
    tflite.FullyConnectedOptionsStart(b)
    tflite.FullyConnectedOptionsAddFusedActivationFunction(b, _act(activation))
    tflite.FullyConnectedOptionsAddWeightsFormat(b, 0)  # DEFAULT
    tflite.FullyConnectedOptionsAddKeepNumDims(b, False)
    return tflite.FullyConnectedOptionsEnd(b)


def _conv_options(b, padding="VALID", stride=(1, 1), activation="NONE"):
    tflite.Conv2DOptionsStart(b)
    tflite.Conv2DOptionsAddPadding(b, _pad(padding))
    tflite.Conv2DOptionsAddStrideH(b, stride[0])
    tflite.Conv2DOptionsAddStrideW(b, stride[1])
    tflite.Conv2DOptionsAddFusedActivationFunction(b, _act(activation))
    tflite.Conv2DOptionsAddDilationHFactor(b, 1)
    tflite.Conv2DOptionsAddDilationWFactor(b, 1)
    return tflite.Conv2DOptionsEnd(b)


def _dw_options(b, padding="VALID", stride=(1, 1), depth_multiplier=1, activation="NONE"):
    tflite.DepthwiseConv2DOptionsStart(b)
    tflite.DepthwiseConv2DOptionsAddPadding(b, _pad(padding))
    tflite.DepthwiseConv2DOptionsAddStrideH(b, stride[0])
    tflite.DepthwiseConv2DOptionsAddStrideW(b, stride[1])
    tflite.DepthwiseConv2DOptionsAddDepthMultiplier(b, depth_multiplier)
    tflite.DepthwiseConv2DOptionsAddFusedActivationFunction(b, _act(activation))
    tflite.DepthwiseConv2DOptionsAddDilationHFactor(b, 1)
    tflite.DepthwiseConv2DOptionsAddDilationWFactor(b, 1)
    return tflite.DepthwiseConv2DOptionsEnd(b)


def _pool_options(b, padding="VALID", stride=(1, 1), filter=(2, 2), activation="NONE"):
    tflite.Pool2DOptionsStart(b)
    tflite.Pool2DOptionsAddPadding(b, _pad(padding))
    tflite.Pool2DOptionsAddStrideH(b, stride[0])
    tflite.Pool2DOptionsAddStrideW(b, stride[1])
    tflite.Pool2DOptionsAddFilterHeight(b, filter[0])
    tflite.Pool2DOptionsAddFilterWidth(b, filter[1])
    tflite.Pool2DOptionsAddFusedActivationFunction(b, _act(activation))
    return tflite.Pool2DOptionsEnd(b)


def _add_options(b, activation="NONE"):
    tflite.AddOptionsStart(b)
    tflite.AddOptionsAddFusedActivationFunction(b, _act(activation))
    return tflite.AddOptionsEnd(b)


def _softmax_options(b, beta=1.0):
    tflite.SoftmaxOptionsStart(b)
    tflite.SoftmaxOptionsAddBeta(b, float(beta))
    return tflite.SoftmaxOptionsEnd(b)


def _reshape_options(b, new_shape=()):
    vec = b.CreateNumpyVector(np.asarray(new_shape, dtype=np.int32))
    tflite.ReshapeOptionsStart(b)
    tflite.ReshapeOptionsAddNewShape(b, vec)
    return tflite.ReshapeOptionsEnd(b)


def _argmax_options(b):
    tflite.ArgMaxOptionsStart(b)
    tflite.ArgMaxOptionsAddOutputType(b, TensorType.INT32)
    return tflite.ArgMaxOptionsEnd(b)


_BO, _BOpt = BuiltinOperator, BuiltinOptions
OPS = {
    "FULLY_CONNECTED": (_BO.FULLY_CONNECTED, _BOpt.FullyConnectedOptions, _fc_options),
    "CONV_2D": (_BO.CONV_2D, _BOpt.Conv2DOptions, _conv_options),
    "DEPTHWISE_CONV_2D": (_BO.DEPTHWISE_CONV_2D, _BOpt.DepthwiseConv2DOptions, _dw_options),
    "AVERAGE_POOL_2D": (_BO.AVERAGE_POOL_2D, _BOpt.Pool2DOptions, _pool_options),
    "MAX_POOL_2D": (_BO.MAX_POOL_2D, _BOpt.Pool2DOptions, _pool_options),
    "ADD": (BuiltinOperator.ADD, BuiltinOptions.AddOptions, _add_options),
    "SOFTMAX": (BuiltinOperator.SOFTMAX, BuiltinOptions.SoftmaxOptions, _softmax_options),
    "RESHAPE": (BuiltinOperator.RESHAPE, BuiltinOptions.ReshapeOptions, _reshape_options),
    "ARG_MAX": (BuiltinOperator.ARG_MAX, BuiltinOptions.ArgMaxOptions, _argmax_options),
}


class ModelBuilder(object):
    """Collects tensors and operators of one subgraph, then writes the model.

    ``tensor()`` returns a tensor index; a tensor with ``data`` is a constant
    (its own buffer); ``scale`` / ``zero_point`` (scalars or sequences) make it
    affine-quantized along ``quantized_dimension``."""

    def __init__(self):
        self._tensors = []
        self._ops = []
        self._opcodes = []

    def tensor(self, shape, dtype, data=None, scale=None, zero_point=None,
               quantized_dimension=0, name=None):
        dtype = np.dtype(dtype)
        if dtype not in _TYPES:
            raise ValueError("unsupported tensor type %s" % dtype)
        shape = [int(d) for d in shape]
        if data is not None:
            data = np.ascontiguousarray(np.asarray(data, dtype=dtype))
            if data.size != int(np.prod(shape, dtype=np.int64)):
                raise ValueError("data of %d elements for shape %s" % (data.size, shape))
        quant = None
        if scale is not None:
            scale = np.atleast_1d(np.asarray(scale, dtype=np.float32))
            zp = np.atleast_1d(np.asarray(0 if zero_point is None else zero_point, dtype=np.int64))
            if zp.size == 1 and scale.size > 1:
                zp = np.repeat(zp, scale.size)
            if zp.size != scale.size:
                raise ValueError("%d scales, %d zero points" % (scale.size, zp.size))
            quant = (scale, zp, int(quantized_dimension))
        self._tensors.append({"shape": shape, "dtype": dtype, "data": data, "quant": quant,
                              "name": name or "t%d" % len(self._tensors)})
        return len(self._tensors) - 1

    def op(self, name, inputs, outputs, **options):
        """Add operator ``name`` (a key of OPS) with its options as keywords."""
        code, _, _ = OPS[name]
        if code not in self._opcodes:
            self._opcodes.append(code)
        self._ops.append((name, list(inputs), list(outputs), options))

    # ---- serialization ----

    @staticmethod
    def _data_vector(b, raw):
        b.StartVector(1, len(raw), _DATA_ALIGN)
        b.head = b.head - len(raw)
        b.Bytes[b.head:b.head + len(raw)] = raw
        return b.EndVector()

    @staticmethod
    def _int_vector(b, values):
        return b.CreateNumpyVector(np.asarray(values, dtype=np.int32))

    def build(self, inputs, outputs, description="tinyadapt test model"):
        """Serialize with subgraph inputs/outputs (tensor indices); returns bytes."""
        b = flatbuffers.Builder(1024)

        # buffers: 0 is the empty sentinel, then one per constant tensor
        buffer_of = {}
        buf_offsets = []
        tflite.BufferStart(b)
        buf_offsets.append(tflite.BufferEnd(b))
        for i, t in enumerate(self._tensors):
            if t["data"] is None:
                continue
            little = t["data"].astype(t["data"].dtype.newbyteorder("<"))
            vec = self._data_vector(b, little.tobytes())
            tflite.BufferStart(b)
            tflite.BufferAddData(b, vec)
            buffer_of[i] = len(buf_offsets)
            buf_offsets.append(tflite.BufferEnd(b))

        tensor_offsets = []
        for i, t in enumerate(self._tensors):
            name = b.CreateString(t["name"])
            shape = self._int_vector(b, t["shape"])
            q_off = None
            if t["quant"] is not None:
                scale, zp, qdim = t["quant"]
                s_vec = b.CreateNumpyVector(scale)
                z_vec = b.CreateNumpyVector(zp)
                tflite.QuantizationParametersStart(b)
                tflite.QuantizationParametersAddScale(b, s_vec)
                tflite.QuantizationParametersAddZeroPoint(b, z_vec)
                tflite.QuantizationParametersAddQuantizedDimension(b, qdim)
                q_off = tflite.QuantizationParametersEnd(b)
            tflite.TensorStart(b)
            tflite.TensorAddShape(b, shape)
            tflite.TensorAddType(b, _TYPES[t["dtype"]])
            tflite.TensorAddBuffer(b, buffer_of.get(i, 0))
            tflite.TensorAddName(b, name)
            if q_off is not None:
                tflite.TensorAddQuantization(b, q_off)
            tensor_offsets.append(tflite.TensorEnd(b))

        op_offsets = []
        for name, ins, outs, options in self._ops:
            code, opt_type, writer = OPS[name]
            opt = writer(b, **options)
            in_vec = self._int_vector(b, ins)
            out_vec = self._int_vector(b, outs)
            tflite.OperatorStart(b)
            tflite.OperatorAddOpcodeIndex(b, self._opcodes.index(code))
            tflite.OperatorAddInputs(b, in_vec)
            tflite.OperatorAddOutputs(b, out_vec)
            tflite.OperatorAddBuiltinOptionsType(b, opt_type)
            tflite.OperatorAddBuiltinOptions(b, opt)
            op_offsets.append(tflite.OperatorEnd(b))

        def table_vector(start, offsets):
            start(b, len(offsets))
            for off in reversed(offsets):
                b.PrependUOffsetTRelative(off)
            return b.EndVector()

        tensors_vec = table_vector(tflite.SubGraphStartTensorsVector, tensor_offsets)
        ops_vec = table_vector(tflite.SubGraphStartOperatorsVector, op_offsets)
        in_vec = self._int_vector(b, inputs)
        out_vec = self._int_vector(b, outputs)
        sg_name = b.CreateString("main")
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, tensors_vec)
        tflite.SubGraphAddInputs(b, in_vec)
        tflite.SubGraphAddOutputs(b, out_vec)
        tflite.SubGraphAddOperators(b, ops_vec)
        tflite.SubGraphAddName(b, sg_name)
        subgraph = tflite.SubGraphEnd(b)

        opcode_offsets = []
        for code in self._opcodes:
            tflite.OperatorCodeStart(b)
            # builtin codes above 127 only fit the int32 field; readers take the max of both
            tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
            tflite.OperatorCodeAddBuiltinCode(b, code)
            tflite.OperatorCodeAddVersion(b, 1)
            opcode_offsets.append(tflite.OperatorCodeEnd(b))

        opcodes_vec = table_vector(tflite.ModelStartOperatorCodesVector, opcode_offsets)
        subgraphs_vec = table_vector(tflite.ModelStartSubgraphsVector, [subgraph])
        buffers_vec = table_vector(tflite.ModelStartBuffersVector, buf_offsets)
        desc = b.CreateString(description)
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, SCHEMA_VERSION)
        tflite.ModelAddOperatorCodes(b, opcodes_vec)
        tflite.ModelAddSubgraphs(b, subgraphs_vec)
        tflite.ModelAddDescription(b, desc)
        tflite.ModelAddBuffers(b, buffers_vec)
        model = tflite.ModelEnd(b)
        b.Finish(model, file_identifier=b"TFL3")
        return bytes(b.Output())


# ---- one-op models ----
# Quantization arguments: in_q / out_q are (scale, zero_point); w_scales is a
# sequence (one scale: per-tensor; one per output channel: per-channel).


def _bias_scales(in_scale, w_scales):
    return [tq.f32(in_scale) * tq.f32(s) for s in np.atleast_1d(w_scales)]


def fully_connected_model(weights, bias, in_q, w_scales, out_q, batch=1, activation="NONE"):
    """FULLY_CONNECTED: input (batch, n_in) int8, weights (n_out, n_in) int8
    symmetric, bias (n_out,) int32, output (batch, n_out) int8."""
    weights = np.asarray(weights, dtype=np.int8)
    n_out, n_in = weights.shape
    m = ModelBuilder()
    x = m.tensor([batch, n_in], np.int8, scale=in_q[0], zero_point=in_q[1], name="input")
    w = m.tensor([n_out, n_in], np.int8, data=weights, scale=w_scales, zero_point=0,
                 quantized_dimension=0, name="weights")
    bs = m.tensor([n_out], np.int32, data=bias, scale=_bias_scales(in_q[0], w_scales),
                  zero_point=0, name="bias")
    y = m.tensor([batch, n_out], np.int8, scale=out_q[0], zero_point=out_q[1], name="output")
    m.op("FULLY_CONNECTED", [x, w, bs], [y], activation=activation)
    return m.build([x], [y])


def conv2d_model(input_shape, weights, bias, in_q, w_scales, out_q, stride=(1, 1),
                 padding="VALID", activation="NONE"):
    """CONV_2D: input NHWC int8, weights (out_c, kh, kw, in_c), bias (out_c,)."""
    weights = np.asarray(weights, dtype=np.int8)
    n, h, w_, c = input_shape
    oc, kh, kw, ic = weights.shape
    assert ic == c
    oh = tq.out_size(_pad(padding), h, kh, stride[0])
    ow = tq.out_size(_pad(padding), w_, kw, stride[1])
    m = ModelBuilder()
    x = m.tensor(input_shape, np.int8, scale=in_q[0], zero_point=in_q[1], name="input")
    wt = m.tensor(weights.shape, np.int8, data=weights, scale=w_scales, zero_point=0,
                  quantized_dimension=0, name="weights")
    bs = m.tensor([oc], np.int32, data=bias, scale=_bias_scales(in_q[0], w_scales),
                  zero_point=0, name="bias")
    y = m.tensor([n, oh, ow, oc], np.int8, scale=out_q[0], zero_point=out_q[1], name="output")
    m.op("CONV_2D", [x, wt, bs], [y], padding=padding, stride=stride, activation=activation)
    return m.build([x], [y])


def depthwise_conv2d_model(input_shape, weights, bias, in_q, w_scales, out_q, depth_multiplier=1,
                           stride=(1, 1), padding="VALID", activation="NONE"):
    """DEPTHWISE_CONV_2D: input NHWC, weights (1, kh, kw, in_c * depth_multiplier),
    per-channel scales along dimension 3; output channel k = c * multiplier + m."""
    weights = np.asarray(weights, dtype=np.int8)
    n, h, w_, c = input_shape
    _, kh, kw, oc = weights.shape
    assert oc == c * depth_multiplier
    oh = tq.out_size(_pad(padding), h, kh, stride[0])
    ow = tq.out_size(_pad(padding), w_, kw, stride[1])
    m = ModelBuilder()
    x = m.tensor(input_shape, np.int8, scale=in_q[0], zero_point=in_q[1], name="input")
    wt = m.tensor(weights.shape, np.int8, data=weights, scale=w_scales, zero_point=0,
                  quantized_dimension=3, name="weights")
    bs = m.tensor([oc], np.int32, data=bias, scale=_bias_scales(in_q[0], w_scales),
                  zero_point=0, name="bias")
    y = m.tensor([n, oh, ow, oc], np.int8, scale=out_q[0], zero_point=out_q[1], name="output")
    m.op("DEPTHWISE_CONV_2D", [x, wt, bs], [y], padding=padding, stride=stride,
         depth_multiplier=depth_multiplier, activation=activation)
    return m.build([x], [y])


def pool_model(kind, input_shape, q, filter=(2, 2), stride=(2, 2), padding="VALID",
               activation="NONE"):
    """AVERAGE_POOL_2D (kind "avg") or MAX_POOL_2D ("max"); TFLM requires the
    output quantization equal to the input's, so both use q."""
    op = {"avg": "AVERAGE_POOL_2D", "max": "MAX_POOL_2D"}[kind]
    n, h, w_, c = input_shape
    oh = tq.out_size(_pad(padding), h, filter[0], stride[0])
    ow = tq.out_size(_pad(padding), w_, filter[1], stride[1])
    m = ModelBuilder()
    x = m.tensor(input_shape, np.int8, scale=q[0], zero_point=q[1], name="input")
    y = m.tensor([n, oh, ow, c], np.int8, scale=q[0], zero_point=q[1], name="output")
    m.op(op, [x], [y], padding=padding, stride=stride, filter=filter, activation=activation)
    return m.build([x], [y])


def add_model(shape, q1, q2, out_q, activation="NONE", shape2=None):
    """ADD of two int8 inputs (shape2 for a broadcast second input)."""
    shape2 = shape if shape2 is None else shape2
    m = ModelBuilder()
    a = m.tensor(shape, np.int8, scale=q1[0], zero_point=q1[1], name="input1")
    b = m.tensor(shape2, np.int8, scale=q2[0], zero_point=q2[1], name="input2")
    out_shape = list(np.broadcast_shapes(tuple(shape), tuple(shape2)))
    y = m.tensor(out_shape, np.int8, scale=out_q[0], zero_point=out_q[1], name="output")
    m.op("ADD", [a, b], [y], activation=activation)
    return m.build([a, b], [y])


SOFTMAX_OUT_Q = (1.0 / 256, -128)  # the only int8 output quantization TFLM accepts


def softmax_model(shape, in_q, beta=1.0):
    """SOFTMAX over the last axis; output scale 1/256, zero point -128."""
    m = ModelBuilder()
    x = m.tensor(shape, np.int8, scale=in_q[0], zero_point=in_q[1], name="input")
    y = m.tensor(shape, np.int8, scale=SOFTMAX_OUT_Q[0], zero_point=SOFTMAX_OUT_Q[1], name="output")
    m.op("SOFTMAX", [x], [y], beta=beta)
    return m.build([x], [y])


def reshape_model(in_shape, out_shape, q):
    """RESHAPE of an int8 tensor (shape given as a constant int32 input and in the options)."""
    m = ModelBuilder()
    x = m.tensor(in_shape, np.int8, scale=q[0], zero_point=q[1], name="input")
    s = m.tensor([len(out_shape)], np.int32, data=out_shape, name="shape")
    y = m.tensor(out_shape, np.int8, scale=q[0], zero_point=q[1], name="output")
    m.op("RESHAPE", [x, s], [y], new_shape=out_shape)
    return m.build([x], [y])


def argmax_model(shape, q, axis=-1):
    """ARG_MAX of an int8 tensor along axis; int32 output (TFLM supports no other)."""
    axis = axis % len(shape)
    m = ModelBuilder()
    x = m.tensor(shape, np.int8, scale=q[0], zero_point=q[1], name="input")
    ax = m.tensor([1], np.int32, data=[axis], name="axis")
    y = m.tensor([d for i, d in enumerate(shape) if i != axis], np.int32, name="output")
    m.op("ARG_MAX", [x, ax], [y])
    return m.build([x], [y])


# ---- runners ----

def _as_list(inputs):
    if isinstance(inputs, np.ndarray):
        return [inputs]
    return list(inputs)


def run_tflm(model_bytes, inputs, arena_size=None):
    """Run the model once on TFLite Micro (reference kernels); returns the list
    of output arrays. ``inputs``: an array or a list, in subgraph input order."""
    from tflite_micro.python.tflite_micro import runtime
    if arena_size is None:
        arena_size = max(1 << 20, 16 * len(model_bytes))
    interp = runtime.Interpreter.from_bytes(bytes(model_bytes), arena_size=arena_size)
    inputs = _as_list(inputs)
    for i, arr in enumerate(inputs):
        interp.set_input(np.ascontiguousarray(arr), i)
    interp.invoke()
    n_out = tflite.Model.GetRootAs(model_bytes, 0).Subgraphs(0).OutputsLength()
    return [np.array(interp.get_output(i), copy=True) for i in range(n_out)]


def run_litert(model_bytes, inputs, reference_kernels=False):
    """Run the model once on LiteRT (its default optimized kernels and delegates,
    one thread; ``reference_kernels=True`` picks its BUILTIN_REF resolver);
    returns the list of output arrays."""
    from ai_edge_litert import interpreter as lite
    resolver = (lite.OpResolverType.BUILTIN_REF if reference_kernels
                else lite.OpResolverType.AUTO)
    interp = lite.Interpreter(model_content=bytes(model_bytes), num_threads=1,
                              experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    for d, arr in zip(interp.get_input_details(), _as_list(inputs)):
        interp.set_tensor(d["index"], np.ascontiguousarray(arr))
    interp.invoke()
    return [np.array(interp.get_tensor(d["index"]), copy=True)
            for d in interp.get_output_details()]


def small_cnn_model(input_shape, in_q, conv_w, conv_b, conv_w_scales, conv_out_q,
                    fc_w, fc_b, fc_w_scales, fc_out_q, conv_stride=(1, 1),
                    conv_padding="SAME", pool=(2, 2), beta=1.0):
    """A small multi-op classifier: input -> CONV_2D (RELU) -> MAX_POOL_2D (pool,
    stride pool, VALID) -> RESHAPE (batch, features) -> FULLY_CONNECTED (logits)
    -> SOFTMAX, and ARG_MAX of the logits. Outputs: [probabilities int8, class
    index int32]. The pool and reshape keep the conv's output quantization."""
    conv_w = np.asarray(conv_w, dtype=np.int8)
    fc_w = np.asarray(fc_w, dtype=np.int8)
    n, h, w_, c = input_shape
    oc, kh, kw, _ = conv_w.shape
    oh = tq.out_size(_pad(conv_padding), h, kh, conv_stride[0])
    ow = tq.out_size(_pad(conv_padding), w_, kw, conv_stride[1])
    ph = tq.out_size(PADDING["VALID"], oh, pool[0], pool[0])
    pw = tq.out_size(PADDING["VALID"], ow, pool[1], pool[1])
    feat = ph * pw * oc
    n_cls = fc_w.shape[0]
    assert fc_w.shape[1] == feat, "fc weights need %d inputs" % feat
    m = ModelBuilder()
    x = m.tensor(input_shape, np.int8, scale=in_q[0], zero_point=in_q[1], name="input")
    cw = m.tensor(conv_w.shape, np.int8, data=conv_w, scale=conv_w_scales, zero_point=0,
                  quantized_dimension=0, name="conv/weights")
    cb = m.tensor([oc], np.int32, data=conv_b, scale=_bias_scales(in_q[0], conv_w_scales),
                  zero_point=0, name="conv/bias")
    cy = m.tensor([n, oh, ow, oc], np.int8, scale=conv_out_q[0], zero_point=conv_out_q[1],
                  name="conv/out")
    m.op("CONV_2D", [x, cw, cb], [cy], padding=conv_padding, stride=conv_stride, activation="RELU")
    py = m.tensor([n, ph, pw, oc], np.int8, scale=conv_out_q[0], zero_point=conv_out_q[1],
                  name="pool/out")
    m.op("MAX_POOL_2D", [cy], [py], padding="VALID", stride=pool, filter=pool)
    shp = m.tensor([2], np.int32, data=[n, feat], name="reshape/shape")
    ry = m.tensor([n, feat], np.int8, scale=conv_out_q[0], zero_point=conv_out_q[1],
                  name="reshape/out")
    m.op("RESHAPE", [py, shp], [ry], new_shape=[n, feat])
    fw = m.tensor(fc_w.shape, np.int8, data=fc_w, scale=fc_w_scales, zero_point=0,
                  quantized_dimension=0, name="fc/weights")
    fb = m.tensor([n_cls], np.int32, data=fc_b, scale=_bias_scales(conv_out_q[0], fc_w_scales),
                  zero_point=0, name="fc/bias")
    logits = m.tensor([n, n_cls], np.int8, scale=fc_out_q[0], zero_point=fc_out_q[1],
                      name="fc/out")
    m.op("FULLY_CONNECTED", [ry, fw, fb], [logits])
    probs = m.tensor([n, n_cls], np.int8, scale=SOFTMAX_OUT_Q[0], zero_point=SOFTMAX_OUT_Q[1],
                     name="probs")
    m.op("SOFTMAX", [logits], [probs], beta=beta)
    ax = m.tensor([1], np.int32, data=[1], name="argmax/axis")
    cls = m.tensor([n], np.int32, name="class")
    m.op("ARG_MAX", [logits, ax], [cls])
    return m.build([x], [probs, cls])
