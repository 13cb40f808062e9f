"""The .tflite -> .tam converter (host_sim/tinyadapt_host/convert_tflite.py,
`tinyadapt convert`, docs/convert.md).

Models are written by tests/tflite_builder.py (each supported op alone, a small
CNN classifier, an MLP, a residual block, float edges), converted, read back with
the host reader, and checked

* structurally: layers, tensors, io, and every integer parameter against
  tests/tflite_quant.py's independent restatement of TFLite's rules (the oracle;
  it never calls the converter);
* numerically: the converted model, run layer by layer through host_sim's
  `_tinyadapt` kernels, gives TFLite Micro's bytes on the same inputs.

Two executors run the converted models:

* `run_tam`, a TEST ORACLE that lives here (written before the inference engine
  existed): deliberately minimal, one kernel call per .tam layer, the arguments
  read off the layer record. It runs every model, multi-input ones included.
* the inference engine, `tinyadapt.Model` (python_lib/tinyadapt/model.py), the
  code a board runs: every single-input model, each output read with
  `Model.features(x, layer, quantized=True)`, classifiers also through
  `predict` and `logits`. Skipped (not failed) while the engine is absent.

Refusals: unsupported ops (all listed at once, with positions), float / uint8 /
int16 models, corrupt files, unsupported options; and the CLI end to end.
"""

import importlib
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, require

import _tinyadapt
import tflite_quant as tq
from tinyadapt_host import tam

_NEEDED = ("tflite", "flatbuffers", "tflite_micro")
_MISSING = [m for m in _NEEDED if importlib.util.find_spec(m) is None]
tb = importlib.import_module("tflite_builder") if not _MISSING else None
ct = importlib.import_module("tinyadapt_host.convert_tflite") if not _MISSING else None


@pytest.fixture(autouse=True)
def _reference_packages():
    require(not _MISSING, "Python packages %s" % ", ".join(_MISSING),
            "pip install -r requirements.txt")


# ---------------------------------------------------------------------------
# ops tflite_builder does not write yet: registered here (entries added, none changed)

def _register_builder_ops():
    if tb is None or "MEAN" in tb.OPS:
        return
    import tflite
    from tflite.BuiltinOperator import BuiltinOperator as BO
    from tflite.BuiltinOptions import BuiltinOptions as BOpt
    from tflite.TensorType import TensorType

    def reducer(b, keep_dims=False):
        tflite.ReducerOptionsStart(b)
        tflite.ReducerOptionsAddKeepDims(b, keep_dims)
        return tflite.ReducerOptionsEnd(b)

    def squeeze(b, squeeze_dims=()):
        vec = b.CreateNumpyVector(np.asarray(squeeze_dims, dtype=np.int32))
        tflite.SqueezeOptionsStart(b)
        tflite.SqueezeOptionsAddSqueezeDims(b, vec)
        return tflite.SqueezeOptionsEnd(b)

    def quantize(b):
        tflite.QuantizeOptionsStart(b)
        return tflite.QuantizeOptionsEnd(b)

    def dequantize(b):
        tflite.DequantizeOptionsStart(b)
        return tflite.DequantizeOptionsEnd(b)

    def argmax_i64(b):
        tflite.ArgMaxOptionsStart(b)
        tflite.ArgMaxOptionsAddOutputType(b, TensorType.INT64)
        return tflite.ArgMaxOptionsEnd(b)

    tb.OPS.update({
        "MEAN": (BO.MEAN, BOpt.ReducerOptions, reducer),
        "SQUEEZE": (BO.SQUEEZE, BOpt.SqueezeOptions, squeeze),
        "QUANTIZE": (BO.QUANTIZE, BOpt.QuantizeOptions, quantize),
        "DEQUANTIZE": (BO.DEQUANTIZE, BOpt.DequantizeOptions, dequantize),
        "ARG_MAX_I64": (BO.ARG_MAX, BOpt.ArgMaxOptions, argmax_i64),
        # unsupported ops, for the refusal tests (options table present, type NONE)
        "TANH": (BO.TANH, BOpt.NONE, quantize),
        "LOGISTIC": (BO.LOGISTIC, BOpt.NONE, quantize),
        "CONCATENATION": (BO.CONCATENATION, BOpt.NONE, quantize),
    })
    tb._TYPES.setdefault(np.dtype(np.uint8), TensorType.UINT8)
    tb._TYPES.setdefault(np.dtype(np.int16), TensorType.INT16)


_register_builder_ops()

ACTS = ["NONE", "RELU", "RELU6", tq.ACT_RELU_N1_TO_1]


def _act_code(a):
    return tb.ACT[a] if isinstance(a, str) else int(a)


def _act_name(a):
    return a if isinstance(a, str) else "RELU_N1_TO_1"


# ---------------------------------------------------------------------------
# TEST ORACLE: a minimal executor of .tam layers over host_sim's kernels

def _b(a):
    return np.ascontiguousarray(a).tobytes()


def run_tam(image, inputs):
    """Run a .tam image on int8 input arrays (model input order) with host_sim's
    `_tinyadapt` kernels, one call per layer; returns the outputs as arrays of
    the output tensors' shapes (int8, or int32 for argmax)."""
    m = tam.from_bytes(image)
    T = dict((t.id, t) for t in m.tensors)
    vals = dict((t.id, t.data) for t in m.tensors if t.data is not None)
    assert len(inputs) == len(m.inputs)
    for io, x in zip(m.inputs, inputs):
        x = np.asarray(x)
        assert x.dtype == np.int8 and x.size == int(np.prod(T[io.tensor].shape))
        vals[io.tensor] = x.reshape(T[io.tensor].shape)
    for l in m.layers:
        out_t = T[l.output]
        shape = out_t.shape
        n_out = int(np.prod(shape))
        out = bytearray(n_out * (4 if out_t.dtype == "int32" else 1))
        x = vals[l.input]
        if l.op == "fully_connected":
            w = vals[l.weights]
            _tinyadapt.fully_connected(out, _b(x), _b(w), _b(vals[l.bias]), _b(vals[l.mult]),
                                       _b(vals[l.shift]), w.shape[1], w.shape[0], l.in_zp,
                                       l.out_zp, l.act_min, l.act_max)
        elif l.op in ("conv2d", "depthwise_conv2d"):
            _, ih, iw, ic = T[l.input].shape
            _, oh, ow, oc = shape
            fn = getattr(_tinyadapt, l.op)
            fn(out, _b(x), _b(vals[l.weights]), _b(vals[l.bias]), _b(vals[l.mult]),
               _b(vals[l.shift]), ih, iw, ic, oc if l.op == "conv2d" else l.depth_multiplier,
               l.filter[0], l.filter[1], l.stride[0], l.stride[1], l.padding[0], l.padding[2],
               oh, ow, l.in_zp, l.out_zp, l.act_min, l.act_max)
        elif l.op in ("avg_pool", "max_pool"):
            _, ih, iw, ic = T[l.input].shape
            _, oh, ow, _ = shape
            getattr(_tinyadapt, l.op)(out, _b(x), ih, iw, ic, l.filter[0], l.filter[1],
                                      l.stride[0], l.stride[1], l.padding[0], l.padding[2],
                                      oh, ow, l.act_min, l.act_max)
        elif l.op == "add":
            p = l.params
            assert p[0] == 20, "the add kernel's left shift is 20"
            _tinyadapt.add(out, _b(x), _b(vals[l.input2]), l.in_zp, p[1], p[2], l.in2_zp, p[3],
                           p[4], l.out_zp, p[5], p[6], l.act_min, l.act_max)
        elif l.op == "softmax":
            _tinyadapt.softmax(out, _b(x), T[l.input].shape[-1], *l.params[:3])
        elif l.op == "argmax":
            assert l.params[0] == len(T[l.input].shape) - 1, "last axis only"
            _tinyadapt.argmax(out, _b(x), T[l.input].shape[-1])
        elif l.op == "reshape":
            out[:] = _b(x)
        else:
            raise AssertionError("oracle executor has no %s" % l.op)
        vals[l.output] = np.frombuffer(bytes(out), np.int32 if out_t.dtype == "int32"
                                       else np.int8).reshape(shape)
    return [vals[io.tensor] for io in m.outputs]


def _engine():
    from tinyadapt import model as engine
    return engine


def run_engine(image, x):
    """Run a single-input .tam image with tinyadapt.Model on int8 array x; returns
    each model output's bytes (Model.features of the layer that writes it) and
    the Model."""
    from tinyadapt import tam as btam
    engine = _engine()
    m = engine.Model(btam.parse(bytearray(image)))
    writer = dict((l.output, i) for i, l in enumerate(m.layers))
    xb = np.ascontiguousarray(x, dtype=np.int8).tobytes()
    return [m.features(xb, writer[io.tensor], quantized=True) for io in m.tam.outputs], m


# ---------------------------------------------------------------------------
# random models

def _rand_i8(rng, shape, lo=-128, hi=127):
    return rng.integers(lo, hi + 1, shape).astype(np.int8)


def _q(rng, lo=0.01, hi=0.2):
    return (float(rng.uniform(lo, hi)), int(rng.integers(-128, 128)))


def _out_scale(rng, in_scale, w_scales, fan_in):
    """An output scale that keeps outputs mostly inside int8 (about 40 units of spread)."""
    acc_std = 74.0 * 73.0 * np.sqrt(fan_in)
    return float(in_scale * np.mean(w_scales) * acc_std / 40.0 * rng.uniform(0.5, 2.0))


def _nice(x):
    """The power of two nearest x: scales in exact ratios meet rounding ties."""
    return float(2.0 ** np.round(np.log2(x)))


def _variant(rng, i, in_q, w_s, out_q):
    """Every 4th model tie-prone (power-of-two scales), every 7th with an effective
    scale above 1 (positive shifts, saturation); returns the new triple and a tag."""
    tag = ""
    if i % 4 == 3:
        in_q, out_q = (_nice(in_q[0]), in_q[1]), (_nice(out_q[0]), out_q[1])
        w_s = np.array([_nice(v) for v in w_s])
        tag += " pow2-scales"
    if i % 7 == 6:
        out_q = (in_q[0] * float(np.min(w_s)) * float(rng.uniform(0.3, 0.9)), out_q[1])
        tag += " multiplier>1"
    return in_q, w_s, out_q, tag


def _bias_scales(in_scale, w_scales):
    return [tq.f32(in_scale) * tq.f32(s) for s in np.atleast_1d(w_scales)]


class Case(object):
    """A model, its inputs for a few runs, and what the converted layers must be."""

    def __init__(self, label, model, draws, ops, reference="tflm"):
        self.reference = reference  # "litert": TFLM cannot run it (int64 ARG_MAX)
        self.label = label
        self.model = model
        self.draws = draws          # list of input lists
        self.ops = ops              # expected .tam op sequence


def _draws(rng, shapes, n=3, dtype=np.int8):
    return [[_rand_i8(rng, s) for s in shapes] for _ in range(n)]


def fc_case(rng, i):
    n_in = int(rng.choice([1, 3, 8, 17, 64, 200]))
    n_out = int(rng.integers(1, 20))
    per_channel = i % 2 == 0
    act = ACTS[i % 4]
    w = _rand_i8(rng, (n_out, n_in), -127)
    in_q = _q(rng, 0.002, 0.2)
    w_s = rng.uniform(0.001, 0.05, n_out if per_channel else 1)
    out_q = (_out_scale(rng, in_q[0], w_s, n_in), int(rng.integers(-128, 128)))
    in_q, w_s, out_q, tag = _variant(rng, i, in_q, w_s, out_q)
    bias = rng.integers(-20000, 20001, n_out).astype(np.int32)
    if "multiplier>1" in tag:
        bias = rng.integers(-100, 101, n_out).astype(np.int32)
    if i % 5 == 4:    # no bias input (optional in TFLite)
        m = tb.ModelBuilder()
        x = m.tensor([1, n_in], np.int8, scale=in_q[0], zero_point=in_q[1])
        wt = m.tensor([n_out, n_in], np.int8, data=w, scale=w_s, zero_point=0)
        y = m.tensor([1, n_out], np.int8, scale=out_q[0], zero_point=out_q[1])
        m.op("FULLY_CONNECTED", [x, wt, -1], [y], activation=_act_code(act))
        model = m.build([x], [y])
    else:
        model = tb.fully_connected_model(w, bias, in_q, w_s, out_q, activation=_act_code(act))
    return Case("fc %d->%d %s %s%s%s" % (n_in, n_out, "per-ch" if per_channel else "per-tensor",
                                         _act_name(act), " no-bias" if i % 5 == 4 else "", tag),
                model, _draws(rng, [(1, n_in)]), ["fully_connected"])


def _conv_case(rng, i, depthwise):
    h, wd = int(rng.integers(1, 10)), int(rng.integers(1, 10))
    c = int(rng.integers(1, 6))
    kh, kw = int(rng.integers(1, min(h, 4) + 1)), int(rng.integers(1, min(wd, 4) + 1))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    padding = ["SAME", "VALID"][i % 2]
    act = ACTS[(i // 2) % 4]
    per_channel = (i // 8) % 2 == 0
    in_q = _q(rng, 0.002, 0.2)
    shape = (1, h, wd, c)
    if depthwise:
        dm = int(rng.integers(1, 4))
        oc = c * dm
        w = _rand_i8(rng, (1, kh, kw, oc), -127)
        fan_in = kh * kw
    else:
        oc = int(rng.integers(1, 8))
        w = _rand_i8(rng, (oc, kh, kw, c), -127)
        fan_in = kh * kw * c
    w_s = rng.uniform(0.001, 0.05, oc if per_channel else 1)
    out_q = (_out_scale(rng, in_q[0], w_s, fan_in), int(rng.integers(-128, 128)))
    in_q, w_s, out_q, tag = _variant(rng, i, in_q, w_s, out_q)
    bias = rng.integers(-20000, 20001, oc).astype(np.int32)
    if "multiplier>1" in tag:
        bias = rng.integers(-100, 101, oc).astype(np.int32)
    if depthwise:
        model = tb.depthwise_conv2d_model(shape, w, bias, in_q, w_s, out_q, depth_multiplier=dm,
                                          stride=stride, padding=padding,
                                          activation=_act_code(act))
    else:
        model = tb.conv2d_model(shape, w, bias, in_q, w_s, out_q, stride=stride, padding=padding,
                                activation=_act_code(act))
    label = "%s %s k%dx%d s%s %s %s %s" % ("dw" if depthwise else "conv", shape, kh, kw, stride,
                                           padding, _act_name(act),
                                           "per-ch" if per_channel else "per-tensor") + tag
    return Case(label, model, _draws(rng, [shape]),
                ["depthwise_conv2d" if depthwise else "conv2d"])


def conv_case(rng, i):
    return _conv_case(rng, i, False)


def dw_case(rng, i):
    return _conv_case(rng, i, True)


def _pool_case(rng, i, kind):
    h, wd, c = int(rng.integers(1, 10)), int(rng.integers(1, 10)), int(rng.integers(1, 5))
    filt = (int(rng.integers(1, min(h, 4) + 1)), int(rng.integers(1, min(wd, 4) + 1)))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    padding = ["SAME", "VALID"][i % 2]
    act = ACTS[(i // 2) % 4]
    q = _q(rng, 0.01, 0.2)
    shape = (1, h, wd, c)
    model = tb.pool_model(kind, shape, q, filter=filt, stride=stride, padding=padding,
                          activation=_act_code(act))
    return Case("%s_pool %s f%s s%s %s %s" % (kind, shape, filt, stride, padding, _act_name(act)),
                model, _draws(rng, [shape]), [kind + "_pool"])


def avg_case(rng, i):
    return _pool_case(rng, i, "avg")


def max_case(rng, i):
    return _pool_case(rng, i, "max")


def _batch1_shape(rng):
    nd = int(rng.integers(1, 5))
    shape = [int(d) for d in rng.integers(1, 7, nd)]
    if nd >= 2:
        shape[0] = 1
    return shape


def add_case(rng, i):
    shape = _batch1_shape(rng)
    act = ACTS[i % 4]
    s1 = float(rng.uniform(0.005, 0.2))
    s2 = s1 * float(rng.choice([1.0, rng.uniform(0.1, 10.0)]))
    q1, q2 = (s1, int(rng.integers(-128, 128))), (s2, int(rng.integers(-128, 128)))
    out_q = (max(s1, s2) * float(rng.uniform(0.8, 3.0)), int(rng.integers(-128, 128)))
    if i % 2 == 1:  # scales in simple ratios: exact ties
        s1 = float(rng.choice([1 / 16.0, 1 / 32.0, 0.05, 0.1]))
        s2 = s1 * float(rng.choice([1.0, 0.5, 0.6, 2.0]))
        q1, q2 = (s1, q1[1]), (s2, q2[1])
        out_q = (max(s1, s2) * float(rng.choice([1.0, 1.6, 2.0, 4.0])), out_q[1])
    if i % 3 == 2:  # a constant second operand (a learned offset)
        m = tb.ModelBuilder()
        a = m.tensor(shape, np.int8, scale=q1[0], zero_point=q1[1])
        b = m.tensor(shape, np.int8, data=_rand_i8(rng, shape), scale=q2[0], zero_point=q2[1])
        y = m.tensor(shape, np.int8, scale=out_q[0], zero_point=out_q[1])
        m.op("ADD", [a, b], [y], activation=_act_code(act))
        return Case("add %s const %s" % (shape, _act_name(act)), m.build([a], [y]),
                    _draws(rng, [shape]), ["add"])
    model = tb.add_model(shape, q1, q2, out_q, activation=_act_code(act))
    return Case("add %s %s" % (shape, _act_name(act)), model, _draws(rng, [shape, shape]), ["add"])


def softmax_case(rng, i):
    depth = int(rng.integers(1, 41))
    shape = [(1, depth), (1, 3, depth), (1, 2, 2, depth)][i % 3]
    in_q = _q(rng, 0.01, 0.5)
    beta = float(rng.choice([1.0, 0.5, 2.0, rng.uniform(0.1, 3.0)]))
    model = tb.softmax_model(shape, in_q, beta=beta)
    return Case("softmax %s beta=%.3f" % (shape, beta), model, _draws(rng, [shape]), ["softmax"])


def argmax_case(rng, i):
    depth = int(rng.integers(1, 40))
    shape = [(1, depth), (1, 2, 3, depth)][i % 2]
    hi = int(rng.choice([-126, 127]))  # -126: many ties
    if i % 3 == 2:  # int64 indices (tf.argmax's default): converted to int32
        m = tb.ModelBuilder()
        x = m.tensor(shape, np.int8, scale=0.1, zero_point=0)
        ax = m.tensor([1], np.int32, data=[len(shape) - 1])
        y = m.tensor(list(shape[:-1]), np.int64)
        m.op("ARG_MAX_I64", [x, ax], [y])
        model = m.build([x], [y])
    else:
        model = tb.argmax_model(shape, (0.1, 0))
    draws = [[_rand_i8(rng, shape, -128, hi)] for _ in range(3)]
    return Case("argmax %s%s" % (shape, " int64" if i % 3 == 2 else ""), model, draws, ["argmax"],
                reference="litert" if i % 3 == 2 else "tflm")


def reshape_case(rng, i):
    q = _q(rng)
    if i % 2 == 0:
        shape, new = (1, 2, 3, 4), [1, 24] if i % 4 == 0 else [1, 6, 4]
        model = tb.reshape_model(shape, new, q)
        return Case("reshape %s -> %s" % (shape, new), model, _draws(rng, [shape]), ["reshape"])
    c = int(rng.integers(1, 20))
    m = tb.ModelBuilder()
    x = m.tensor([1, 1, 1, c], np.int8, scale=q[0], zero_point=q[1])
    y = m.tensor([1, c], np.int8, scale=q[0], zero_point=q[1])
    m.op("SQUEEZE", [x], [y], squeeze_dims=[1, 2])
    return Case("squeeze (1,1,1,%d)" % c, m.build([x], [y]), _draws(rng, [(1, 1, 1, c)]),
                ["reshape"])


def mean_model(shape, in_q, out_q, keep_dims, axes=(1, 2)):
    c = shape[3]
    m = tb.ModelBuilder()
    x = m.tensor(shape, np.int8, scale=in_q[0], zero_point=in_q[1])
    ax = m.tensor([len(axes)], np.int32, data=list(axes))
    y = m.tensor([1, 1, 1, c] if keep_dims else [1, c], np.int8, scale=out_q[0],
                 zero_point=out_q[1])
    m.op("MEAN", [x, ax], [y], keep_dims=keep_dims)
    return m.build([x], [y])


def mean_case(rng, i):
    shape = (1, int(rng.integers(1, 16)), int(rng.integers(1, 16)), int(rng.integers(1, 6)))
    if i == 0:
        shape = (1, 40, 30, 2)  # 1200 cells: the 1/count shift is clamped by 31 + shift
    in_q = _q(rng)
    out_q = (in_q[0] * float(rng.choice([1.0, rng.uniform(0.2, 2.0), 0.5, 0.25])),
             int(rng.choice([in_q[1], int(rng.integers(-128, 128))])))
    keep = i % 2 == 0
    axes = [(1, 2), (2, 1), (-3, -2)][i % 3]
    return Case("mean %s keep=%s" % (shape, keep), mean_model(shape, in_q, out_q, keep, axes),
                _draws(rng, [shape]), ["depthwise_conv2d"] if keep else
                ["depthwise_conv2d", "reshape"])


SINGLE_OP = {  # name -> (generator, models, seed)
    "fully_connected": (fc_case, 28, 101),
    "conv2d": (conv_case, 28, 102),
    "depthwise_conv2d": (dw_case, 28, 103),
    "avg_pool": (avg_case, 12, 104),
    "max_pool": (max_case, 12, 105),
    "add": (add_case, 18, 106),
    "softmax": (softmax_case, 12, 107),
    "argmax": (argmax_case, 9, 108),
    "reshape": (reshape_case, 6, 109),
    "mean": (mean_case, 14, 110),
}


# ---- multi-op models

def _conv_layer(m, rng, x, x_q, shape, oc, k, padding="SAME", act="RELU", stride=(1, 1),
                depthwise=False, dm=1):
    n, h, w, c = shape
    oh = tq.out_size(tb.PADDING[padding], h, k, stride[0])
    ow = tq.out_size(tb.PADDING[padding], w, k, stride[1])
    if depthwise:
        oc = c * dm
        wts = _rand_i8(rng, (1, k, k, oc), -127)
        fan_in, qdim = k * k, 3
    else:
        wts = _rand_i8(rng, (oc, k, k, c), -127)
        fan_in, qdim = k * k * c, 0
    w_s = rng.uniform(0.002, 0.02, oc)
    out_q = (_out_scale(rng, x_q[0], w_s, fan_in), int(rng.integers(-128, 0)))
    wt = m.tensor(wts.shape, np.int8, data=wts, scale=w_s, zero_point=0, quantized_dimension=qdim)
    bt = m.tensor([oc], np.int32, data=rng.integers(-3000, 3001, oc),
                  scale=_bias_scales(x_q[0], w_s))
    y = m.tensor([n, oh, ow, oc], np.int8, scale=out_q[0], zero_point=out_q[1])
    if depthwise:
        m.op("DEPTHWISE_CONV_2D", [x, wt, bt], [y], padding=padding, stride=stride,
             depth_multiplier=dm, activation=act)
    else:
        m.op("CONV_2D", [x, wt, bt], [y], padding=padding, stride=stride, activation=act)
    return y, out_q, (n, oh, ow, oc)


def _fc_layer(m, rng, x, x_q, n_in, n_out, act="NONE", per_channel=True):
    w = _rand_i8(rng, (n_out, n_in), -127)
    w_s = rng.uniform(0.002, 0.02, n_out if per_channel else 1)
    out_q = (_out_scale(rng, x_q[0], w_s, n_in), int(rng.integers(-128, 128)))
    wt = m.tensor([n_out, n_in], np.int8, data=w, scale=w_s, zero_point=0)
    bt = m.tensor([n_out], np.int32, data=rng.integers(-3000, 3001, n_out),
                  scale=_bias_scales(x_q[0], w_s))
    y = m.tensor([1, n_out], np.int8, scale=out_q[0], zero_point=out_q[1])
    m.op("FULLY_CONNECTED", [x, wt, bt], [y], activation=act)
    return y, out_q


def _softmax_argmax(m, logits, n_cls, beta=1.0):
    probs = m.tensor([1, n_cls], np.int8, scale=tb.SOFTMAX_OUT_Q[0], zero_point=tb.SOFTMAX_OUT_Q[1])
    m.op("SOFTMAX", [logits], [probs], beta=beta)
    ax = m.tensor([1], np.int32, data=[1])
    cls = m.tensor([1], np.int32)
    m.op("ARG_MAX", [logits, ax], [cls])
    return probs, cls


def cnn_case(rng, i):
    """conv (RELU) -> depthwise (RELU6) -> pool -> reshape -> FC -> softmax, plus argmax."""
    h, w, c = int(rng.integers(4, 11)), int(rng.integers(4, 11)), int(rng.integers(1, 4))
    in_q = _q(rng, 0.01, 0.1)
    m = tb.ModelBuilder()
    shape = (1, h, w, c)
    x = m.tensor(shape, np.int8, scale=in_q[0], zero_point=in_q[1], name="image")
    y, q, s = _conv_layer(m, rng, x, in_q, shape, int(rng.integers(2, 7)), int(rng.integers(1, 4)),
                          stride=(1 + i % 2, 1 + i % 2))
    y, q, s = _conv_layer(m, rng, y, q, s, 0, 3, act="RELU6", depthwise=True, dm=1 + i % 2)
    ph, pw = s[1] // 2, s[2] // 2
    py = m.tensor([1, ph, pw, s[3]], np.int8, scale=q[0], zero_point=q[1])
    m.op("MAX_POOL_2D" if i % 2 else "AVERAGE_POOL_2D", [y], [py], padding="VALID",
         stride=(2, 2), filter=(2, 2))
    feat = ph * pw * s[3]
    shp = m.tensor([2], np.int32, data=[1, feat])
    ry = m.tensor([1, feat], np.int8, scale=q[0], zero_point=q[1])
    m.op("RESHAPE", [py, shp], [ry], new_shape=[1, feat])
    n_cls = int(rng.integers(2, 11))
    logits, lq = _fc_layer(m, rng, ry, q, feat, n_cls, per_channel=i % 3 != 0)
    probs, cls = _softmax_argmax(m, logits, n_cls, beta=float(rng.choice([1.0, 0.5])))
    return Case("cnn %s" % (shape,), m.build([x], [probs, cls]), _draws(rng, [shape], 4),
                ["conv2d", "depthwise_conv2d", "max_pool" if i % 2 else "avg_pool", "reshape",
                 "fully_connected", "softmax", "argmax"])


def mlp_case(rng, i):
    """FC (RELU) -> FC (RELU6 / RELU_N1_TO_1) -> FC -> softmax, plus argmax."""
    n_in = int(rng.integers(4, 65))
    hid1, hid2, n_cls = int(rng.integers(4, 33)), int(rng.integers(4, 33)), int(rng.integers(2, 11))
    in_q = _q(rng, 0.01, 0.1)
    m = tb.ModelBuilder()
    x = m.tensor([1, n_in], np.int8, scale=in_q[0], zero_point=in_q[1], name="features")
    y, q = _fc_layer(m, rng, x, in_q, n_in, hid1, act="RELU", per_channel=i % 2 == 0)
    y, q = _fc_layer(m, rng, y, q, hid1, hid2, act=["RELU6", tq.ACT_RELU_N1_TO_1][i % 2])
    logits, q = _fc_layer(m, rng, y, q, hid2, n_cls, per_channel=i % 2 == 1)
    probs, cls = _softmax_argmax(m, logits, n_cls)
    return Case("mlp %d-%d-%d-%d" % (n_in, hid1, hid2, n_cls), m.build([x], [probs, cls]),
                _draws(rng, [(1, n_in)], 4),
                ["fully_connected"] * 3 + ["softmax", "argmax"])


def residual_case(rng, i):
    """conv (RELU) -> conv -> ADD with the block input (RELU) -> MEAN over H, W
    -> FC -> softmax."""
    h, w, c = int(rng.integers(3, 9)), int(rng.integers(3, 9)), int(rng.integers(1, 5))
    in_q = _q(rng, 0.02, 0.1)
    m = tb.ModelBuilder()
    shape = (1, h, w, c)
    x = m.tensor(shape, np.int8, scale=in_q[0], zero_point=in_q[1], name="image")
    y, q, s = _conv_layer(m, rng, x, in_q, shape, c, 3)
    y, q, s = _conv_layer(m, rng, y, q, s, c, 3, act="NONE")
    out_q = (max(q[0], in_q[0]) * float(rng.uniform(1.0, 2.0)), int(rng.integers(-128, 0)))
    r = m.tensor(list(shape), np.int8, scale=out_q[0], zero_point=out_q[1])
    m.op("ADD", [x, y], [r], activation="RELU")
    mean_q = (out_q[0] * float(rng.uniform(0.5, 1.0)), int(rng.integers(-128, 0)))
    ax = m.tensor([2], np.int32, data=[1, 2])
    g = m.tensor([1, c], np.int8, scale=mean_q[0], zero_point=mean_q[1])
    m.op("MEAN", [r, ax], [g], keep_dims=False)
    n_cls = int(rng.integers(2, 8))
    logits, lq = _fc_layer(m, rng, g, mean_q, c, n_cls)
    probs = m.tensor([1, n_cls], np.int8, scale=tb.SOFTMAX_OUT_Q[0], zero_point=tb.SOFTMAX_OUT_Q[1])
    m.op("SOFTMAX", [logits], [probs])
    return Case("residual %s" % (shape,), m.build([x], [probs]), _draws(rng, [shape], 4),
                ["conv2d", "conv2d", "add", "depthwise_conv2d", "reshape", "fully_connected",
                 "softmax"])


MULTI_OP = {
    "cnn": (cnn_case, 10, 201),
    "mlp": (mlp_case, 8, 202),
    "residual": (residual_case, 8, 203),
}

_cache = {}


def cases(table, name):
    key = (id(table), name)
    if key not in _cache:
        gen, count, seed = table[name]
        rng = np.random.default_rng(seed)
        _cache[key] = [gen(rng, i) for i in range(count)]
    return _cache[key]


def _check_against_tflm(case):
    image = ct.convert_bytes(case.model)
    m = tam.from_bytes(image)
    assert [l.op for l in m.layers] == case.ops, case.label
    for k, inputs in enumerate(case.draws):
        if case.reference == "litert":
            want = tb.run_litert(case.model, inputs, reference_kernels=True)
        else:
            want = tb.run_tflm(case.model, inputs)
        got = run_tam(image, inputs)
        assert len(got) == len(want)
        for j, (g, w) in enumerate(zip(got, want)):
            w = np.asarray(w)
            if w.dtype == np.int64:     # ARG_MAX int64 indices become int32
                assert w.min(initial=0) >= 0 and w.max(initial=0) < 2 ** 31
                w = w.astype(np.int32)
            assert g.dtype == w.dtype, "%s output %d: %s vs TFLM %s" % (case.label, j, g.dtype,
                                                                        w.dtype)
            if g.tobytes() != w.tobytes():
                bad = np.flatnonzero(g.reshape(-1) != w.reshape(-1))
                pytest.fail("%s, draw %d, output %d: %d of %d values differ from TFLM; first at "
                            "%d: converted %d, TFLM %d" % (case.label, k, j, bad.size, w.size,
                                                          bad[0], g.reshape(-1)[bad[0]],
                                                          w.reshape(-1)[bad[0]]))
    return m


def _reference(case, inputs):
    if case.reference == "litert":
        want = tb.run_litert(case.model, inputs, reference_kernels=True)
    else:
        want = tb.run_tflm(case.model, inputs)
    return [np.asarray(w).astype(np.int32) if np.asarray(w).dtype == np.int64 else np.asarray(w)
            for w in want]


def _check_engine(case):
    image = ct.convert_bytes(case.model)
    if len(case.draws[0]) != 1:
        return 0        # tinyadapt.Model runs single-input models
    for k, inputs in enumerate(case.draws):
        got, model = run_engine(image, inputs[0])
        want = _reference(case, inputs)
        for j, (g, w) in enumerate(zip(got, want)):
            assert g == w.tobytes(), "%s, draw %d, output %d: engine differs from %s" % (
                case.label, k, j, case.reference.upper())
        if case.ops[-2:] == ["softmax", "argmax"]:     # classifiers: predict is TFLM's ARG_MAX
            assert model.predict(inputs[0].tobytes(), quantized=True) == int(want[-1][0])
    return 1


@pytest.mark.parametrize("name", sorted(SINGLE_OP) + sorted(MULTI_OP))
def test_converted_models_on_the_engine_match_tflm(name):
    table = SINGLE_OP if name in SINGLE_OP else MULTI_OP
    ran = sum(_check_engine(case) for case in cases(table, name))
    assert ran > 0 or name == "add"


@pytest.mark.parametrize("name", sorted(SINGLE_OP))
def test_single_op_models_match_tflm(name):
    for case in cases(SINGLE_OP, name):
        _check_against_tflm(case)


@pytest.mark.parametrize("name", sorted(MULTI_OP))
def test_multi_op_models_match_tflm(name):
    for case in cases(MULTI_OP, name):
        _check_against_tflm(case)


def test_float_edges_folded_into_io():
    """float32 input -> QUANTIZE -> FC -> DEQUANTIZE -> float32 output: the converted
    model starts and ends at the int8 tensors, whose scale and zero point become
    the io pair; TFLM's float output is the dequantized int8 output."""
    rng = np.random.default_rng(5)
    for i in range(6):
        n_in, n_out = int(rng.integers(2, 30)), int(rng.integers(2, 10))
        in_q = _q(rng, 0.01, 0.1)
        m = tb.ModelBuilder()
        xf = m.tensor([1, n_in], np.float32, name="x_float")
        xq = m.tensor([1, n_in], np.int8, scale=in_q[0], zero_point=in_q[1], name="x_int8")
        m.op("QUANTIZE", [xf], [xq])
        y, out_q = _fc_layer(m, rng, xq, in_q, n_in, n_out, act=["NONE", "RELU"][i % 2])
        yf = m.tensor([1, n_out], np.float32, name="y_float")
        m.op("DEQUANTIZE", [y], [yf])
        model = m.build([xf], [yf])
        image = ct.convert_bytes(model)
        tm = tam.from_bytes(image)
        assert [l.op for l in tm.layers] == ["fully_connected"]
        (inp,), (out,) = tm.inputs, tm.outputs
        assert tm.tensor(inp.tensor).dtype == "int8" and tm.tensor(out.tensor).dtype == "int8"
        assert (inp.scale, inp.zero_point) == (tq.f32(in_q[0]), in_q[1])
        assert (out.scale, out.zero_point) == (tq.f32(out_q[0]), out_q[1])
        for _ in range(3):
            q = _rand_i8(rng, (1, n_in))
            # float inputs that quantize back to q exactly (no rounding tie anywhere)
            x = ((q.astype(np.float32) - np.float32(in_q[1]))
                 * np.float32(in_q[0])).astype(np.float32)
            (yt,) = tb.run_tflm(model, [x])
            (yq,) = run_tam(image, [q])
            back = np.round(yt / np.float32(out_q[0])).astype(np.int64) + out_q[1]
            assert np.array_equal(back.reshape(-1), yq.reshape(-1).astype(np.int64))
            deq = (yq.astype(np.float32) - np.float32(out_q[1])) * np.float32(out_q[0])
            assert np.allclose(deq.reshape(-1), yt.reshape(-1), rtol=1e-6, atol=0)


# ---------------------------------------------------------------------------
# structure: every converted parameter against tests/tflite_quant.py (the oracle)

def test_structure_of_a_converted_cnn():
    rng = np.random.default_rng(11)
    case = cnn_case(rng, 1)        # max pool, per-channel FC
    graph = ct.read_tflite(case.model)
    T = graph.tensors
    image = ct.convert_bytes(case.model, source="/some/dir/cnn.tflite", trainable="last")
    m = tam.from_bytes(image)
    by_id = dict((t.id, t) for t in m.tensors)
    conv_op, dw_op, pool_op, _, fc_op, sm_op, am_op = graph.ops

    def q(i):
        return float(T[i].scales[0]), int(T[i].zero_points[0])

    conv, dw, pool, reshape, fc, sm, am = m.layers
    # conv: weights bytes, per-channel scales, bias, requantization, clamp
    w = by_id[conv.weights]
    assert w.role == "weights" and w.data.tobytes() == T[conv_op.inputs[1]].data.tobytes()
    assert w.axis == 0 and np.array_equal(by_id[w.scales].data, T[conv_op.inputs[1]].scales)
    assert by_id[conv.bias].data.tobytes() == T[conv_op.inputs[2]].data.tobytes()
    for layer, op, per in ((conv, conv_op, 0), (dw, dw_op, 3)):
        oc = by_id[layer.output].shape[3]
        mult, shift = tq.conv_multipliers(q(op.inputs[0])[0], T[op.inputs[1]].scales,
                                          q(op.outputs[0])[0], n_channels=oc)
        assert np.array_equal(by_id[layer.mult].data, mult)
        assert np.array_equal(by_id[layer.shift].data, shift)
        assert by_id[layer.weights].axis == per
        assert (layer.in_zp, layer.out_zp) == (q(op.inputs[0])[1], q(op.outputs[0])[1])
    assert (conv.act_min, conv.act_max) == tq.activation_range(tq.ACT_RELU, *q(conv_op.outputs[0]))
    assert (dw.act_min, dw.act_max) == tq.activation_range(tq.ACT_RELU6, *q(dw_op.outputs[0]))
    assert dw.depth_multiplier == 2 and dw.filter == (3, 3)
    # geometry: SAME, stride 2 for the conv of case 1
    h, w_ = T[conv_op.inputs[0]].shape[1:3]
    kh, kw = T[conv_op.inputs[1]].shape[1:3]
    oh, pt, pb = tq.padding(tq.PADDING_SAME, h, kh, 2)
    ow, pl, pr = tq.padding(tq.PADDING_SAME, w_, kw, 2)
    assert conv.stride == (2, 2) and conv.padding == (pt, pb, pl, pr)
    assert pool.op == "max_pool" and pool.filter == (2, 2) and pool.stride == (2, 2)
    assert by_id[reshape.output].shape == tuple(T[fc_op.inputs[0]].shape)
    n_cls = T[fc_op.inputs[1]].shape[0]
    mult, shift = tq.fc_multipliers(q(fc_op.inputs[0])[0], T[fc_op.inputs[1]].scales,
                                    q(fc_op.outputs[0])[0], n_cls)
    assert np.array_equal(by_id[fc.mult].data, mult) and np.array_equal(by_id[fc.shift].data, shift)
    p = tq.softmax_params(q(sm_op.inputs[0])[0], sm_op.options["Beta"])
    assert sm.params[:3] == (p["input_multiplier"], p["input_left_shift"], p["diff_min"])
    assert am.params[0] == 1 and by_id[am.output].dtype == "int32"
    # io: the model's own quantization; the class index output has scale 1
    assert [(io.scale, io.zero_point) for io in m.inputs] == [q(graph.inputs[0])]
    assert [(io.scale, io.zero_point) for io in m.outputs] == [(1.0 / 256, -128), (1.0, 0)]
    # trainable="last": the FC's weights and bias only
    assert sorted(t.id for t in m.tensors if t.trainable) == sorted([fc.weights, fc.bias])
    meta = json.loads(m.metadata)
    assert meta["converter"] == "tinyadapt_host.convert_tflite" and meta["source"] == "cnn.tflite"
    assert meta["inputs"] == ["image"] and len(meta["source_sha256"]) == 64
    # every activation is an activation; weights/bias/mult/shift have their roles
    for t in m.tensors:
        assert (t.data is None) == (t.role == "activation")


def test_add_and_mean_parameters_match_tflite_rules():
    rng = np.random.default_rng(12)
    case = residual_case(rng, 0)
    graph = ct.read_tflite(case.model)
    T = graph.tensors
    m = tam.from_bytes(ct.convert_bytes(case.model, trainable="all"))
    by_id = dict((t.id, t) for t in m.tensors)
    add_op = [o for o in graph.ops if o.name == "ADD"][0]
    mean_op = [o for o in graph.ops if o.name == "MEAN"][0]

    def q(i):
        return float(T[i].scales[0]), int(T[i].zero_points[0])

    add = [l for l in m.layers if l.op == "add"][0]
    p = tq.add_params(*(q(add_op.inputs[0]) + q(add_op.inputs[1]) + q(add_op.outputs[0])),
                      activation=tq.ACT_RELU)
    assert add.params == (20, p["input1_multiplier"], p["input1_shift"], p["input2_multiplier"],
                          p["input2_shift"], p["output_multiplier"], p["output_shift"])
    assert (add.act_min, add.act_max) == (p["act_min"], p["act_max"])
    # MEAN: a depthwise conv of ones; TFLM folds 1/count into the multiplier
    mean = m.layers[3]
    h, w_, c = T[mean_op.inputs[0]].shape[1:]
    assert mean.op == "depthwise_conv2d" and mean.filter == (h, w_)
    assert np.all(by_id[mean.weights].data == 1) and not np.any(by_id[mean.bias].data)
    base_m, base_s = tq.quantize_multiplier(tq.f32(q(mean_op.inputs[0])[0])
                                            / tq.f32(q(mean_op.outputs[0])[0]))
    n = h * w_
    sh = min(int(np.floor(np.log2(n))), 32, 31 + base_s)
    assert set(by_id[mean.mult].data.tolist()) == {(base_m << sh) // n}
    assert set(by_id[mean.shift].data.tolist()) == {base_s - sh}
    # trainable="all": the two convs and the FC, not the MEAN's ones
    trainable = set(t.id for t in m.tensors if t.trainable)
    want = set()
    for l in m.layers:
        if l.op in ("conv2d", "fully_connected"):
            want |= {l.weights, l.bias}
    assert trainable == want


def test_per_tensor_weights_and_missing_bias():
    rng = np.random.default_rng(13)
    case = fc_case(rng, 9)          # per-tensor (odd), no bias (i % 5 == 4)
    assert "per-tensor" in case.label and "no-bias" in case.label
    m = tam.from_bytes(ct.convert_bytes(case.model))
    (fc,) = m.layers
    w, b = m.tensor(fc.weights), m.tensor(fc.bias)
    assert w.axis is None and w.scales is None and w.scale > 0
    assert b.dtype == "int32" and not np.any(b.data)
    assert [t.id for t in m.tensors if t.trainable] == [fc.weights, fc.bias]  # default: last
    m = tam.from_bytes(ct.convert_bytes(case.model, trainable="none"))
    assert not any(t.trainable for t in m.tensors)


def test_parameter_rules_agree_with_the_oracle():
    """The converter's own copy of TFLite's rules against tests/tflite_quant.py's,
    on random and tie-prone scales (exact halves of q * 2^31 included)."""
    rng = np.random.default_rng(17)
    reals = list(rng.uniform(1e-6, 4.0, 3000)) + [0.5 + 2.0 ** -32, 0.75 + 2.0 ** -31, 1.0,
                                                  2.0 ** -31, 2.0 ** -33, 1.0 - 2.0 ** -33]
    for r in reals:
        assert ct.quantize_multiplier(r) == tq.quantize_multiplier(r), r
    for _ in range(500):
        i_s, o_s = float(rng.uniform(0.001, 0.5)), float(rng.uniform(0.001, 0.5))
        w_s = rng.uniform(0.0005, 0.05, int(rng.integers(1, 6)))
        if rng.random() < 0.3:
            i_s, o_s, w_s = _nice(i_s), _nice(o_s), np.array([_nice(v) for v in w_s])
        got, want = ct.conv_multipliers(i_s, w_s, o_s, w_s.size), tq.conv_multipliers(
            i_s, w_s, o_s, n_channels=w_s.size)
        assert all(np.array_equal(a, b) for a, b in zip(got, want))
        zp = int(rng.integers(-128, 128))
        for act in (tq.ACT_NONE, tq.ACT_RELU, tq.ACT_RELU6, tq.ACT_RELU_N1_TO_1):
            assert ct.activation_range(act, o_s, zp) == tq.activation_range(act, o_s, zp)
        beta = float(rng.choice([1.0, 0.5, rng.uniform(0.1, 3.0)]))
        p = tq.softmax_params(i_s, beta)
        assert ct.softmax_params(i_s, beta) == (p["input_multiplier"], p["input_left_shift"],
                                                p["diff_min"])
        so = max(i_s, o_s) * float(rng.uniform(0.5, 3.0))
        a = tq.add_params(i_s, 0, o_s, 0, so, 0)
        assert ct.add_params(i_s, o_s, so) == (
            a["left_shift"], a["input1_multiplier"], a["input1_shift"], a["input2_multiplier"],
            a["input2_shift"], a["output_multiplier"], a["output_shift"])
        n, k, st = int(rng.integers(1, 30)), int(rng.integers(1, 6)), int(rng.integers(1, 4))
        assert ct.padding(tq.PADDING_SAME, n, k, st) == tq.padding(tq.PADDING_SAME, n, k, st)
        if k <= n:
            assert ct.padding(tq.PADDING_VALID, n, k, st) == tq.padding(tq.PADDING_VALID, n, k, st)


# ---------------------------------------------------------------------------
# refusals

def _err(model, *needles):
    with pytest.raises(ct.ConvertError) as e:
        ct.convert_bytes(model)
    msg = str(e.value)
    for n in needles:
        assert n in msg, "%r not in %r" % (n, msg)
    return msg


def _chain_with(ops):
    """int8 (1, 8) -> op -> op ... each op one input, one output, same quantization."""
    m = tb.ModelBuilder()
    t = m.tensor([1, 8], np.int8, scale=0.1, zero_point=0)
    first = t
    for name in ops:
        y = m.tensor([1, 8], np.int8, scale=0.1, zero_point=0)
        if name == "SOFTMAX":
            y = m.tensor([1, 8], np.int8, scale=1 / 256.0, zero_point=-128)
            m.op(name, [t], [y], beta=1.0)
        elif name == "CONCATENATION":
            y = m.tensor([1, 16], np.int8, scale=0.1, zero_point=0)
            m.op(name, [t, t], [y])
        else:
            m.op(name, [t], [y])
        t = y
    return m.build([first], [t])


def test_unsupported_ops_listed_at_once_with_positions():
    model = _chain_with(["SOFTMAX", "TANH", "LOGISTIC", "TANH", "CONCATENATION"])
    msg = _err(model, "TANH at ops 1, 3", "LOGISTIC at op 2", "CONCATENATION at op 4")
    assert "SOFTMAX" not in msg.split("Supported")[0]
    assert "Supported: FULLY_CONNECTED" in msg
    _err(_chain_with(["LOGISTIC"]), "unsupported op: LOGISTIC at op 0")


def test_float_model_refused():
    m = tb.ModelBuilder()
    x = m.tensor([1, 4], np.float32, name="in")
    w = m.tensor([3, 4], np.float32, data=np.ones((3, 4)))
    b = m.tensor([3], np.float32, data=np.zeros(3))
    y = m.tensor([1, 3], np.float32)
    m.op("FULLY_CONNECTED", [x, w, b], [y])
    _err(m.build([x], [y]), "float32 model", "op 0 (FULLY_CONNECTED)", "'in'",
         "full-integer int8 quantization")


def test_dynamic_range_model_refused():
    """int8 weights with float activations (dynamic-range quantization)."""
    m = tb.ModelBuilder()
    x = m.tensor([1, 4], np.float32)
    w = m.tensor([3, 4], np.int8, data=np.ones((3, 4)), scale=[0.1], zero_point=0)
    b = m.tensor([3], np.float32, data=np.zeros(3))
    y = m.tensor([1, 3], np.float32)
    m.op("FULLY_CONNECTED", [x, w, b], [y])
    _err(m.build([x], [y]), "dynamic-range")


@pytest.mark.parametrize("dtype,needle", [(np.uint8, "uint8 (legacy quantization)"),
                                          (np.int16, "int16-activation (16x8")])
def test_uint8_and_int16_models_refused(dtype, needle):
    m = tb.ModelBuilder()
    x = m.tensor([1, 4, 4, 1], dtype, scale=0.1, zero_point=0)
    y = m.tensor([1, 2, 2, 1], dtype, scale=0.1, zero_point=0)
    m.op("MAX_POOL_2D", [x], [y], filter=(2, 2), stride=(2, 2))
    _err(m.build([x], [y]), needle)


def test_corrupt_files_refused_clearly():
    good = tb.reshape_model((1, 2, 3, 4), [1, 24], (0.1, 0))
    _err(b"", "too short")
    _err(b"\x00" * 64, "no 'TFL3' file identifier")
    _err(b"TAM1" + b"\x00" * 60, "not a TFLite model")
    _err(good[:4] + b"XXXX" + good[8:], "file identifier")
    _err(b"\xff\xff\xff\x7f" + good[4:], "root table offset")
    _err(good[:len(good) // 3], "corrupt TFLite model")
    # random damage: either a clean conversion or a ConvertError, never another exception
    rng = np.random.default_rng(3)
    cnn = cnn_case(np.random.default_rng(1), 0).model
    outcomes = {"ok": 0, "refused": 0}
    for k in range(300):
        bad = bytearray(cnn)
        for _ in range(int(rng.integers(1, 6))):
            bad[int(rng.integers(8, len(bad)))] = int(rng.integers(0, 256))
        try:
            ct.convert_bytes(bytes(bad))
            outcomes["ok"] += 1
        except ct.ConvertError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0


def test_unsupported_options_and_shapes_refused_each_with_its_reason():
    rng = np.random.default_rng(14)
    w = _rand_i8(rng, (2, 3, 3, 1), -127)
    # fused TANH
    _err(tb.conv2d_model((1, 5, 5, 1), w, [0, 0], (0.1, 0), [0.01], (0.1, 0),
                         activation=4),     # ActivationFunctionType.TANH
         "op 0 (CONV_2D)", "fused activation TANH")
    # batch 2
    _err(tb.conv2d_model((2, 5, 5, 1), w, [0, 0], (0.1, 0), [0.01], (0.1, 0)),
         "batch 2", "only batch 1")
    # broadcasting ADD
    _err(tb.add_model([1, 4], (0.1, 0), (0.1, 0), (0.2, 0), shape2=[1, 1]), "broadcasting")
    # MEAN over channels
    _err(mean_model((1, 3, 3, 4), (0.1, 0), (0.1, 0), True, axes=(3,)), "only over H and W")
    # ARG_MAX over another axis
    _err(tb.argmax_model((1, 3, 4), (0.1, 0), axis=1), "only the last axis")
    # pooling that would need a requantization
    m = tb.ModelBuilder()
    x = m.tensor([1, 4, 4, 1], np.int8, scale=0.1, zero_point=0)
    y = m.tensor([1, 2, 2, 1], np.int8, scale=0.2, zero_point=0)
    m.op("AVERAGE_POOL_2D", [x], [y], filter=(2, 2), stride=(2, 2))
    _err(m.build([x], [y]), "op 0 (AVERAGE_POOL_2D)", "needs them equal")
    # softmax output quantization
    m = tb.ModelBuilder()
    x = m.tensor([1, 4], np.int8, scale=0.1, zero_point=0)
    y = m.tensor([1, 4], np.int8, scale=0.1, zero_point=0)
    m.op("SOFTMAX", [x], [y], beta=1.0)
    _err(m.build([x], [y]), "scale 1/256")
    # asymmetric weights
    m = tb.ModelBuilder()
    x = m.tensor([1, 4], np.int8, scale=0.1, zero_point=0)
    wt = m.tensor([2, 4], np.int8, data=np.ones((2, 4)), scale=[0.1], zero_point=[3])
    y = m.tensor([1, 2], np.int8, scale=0.1, zero_point=0)
    m.op("FULLY_CONNECTED", [x, wt, -1], [y])
    _err(m.build([x], [y]), "not symmetric")


def test_dilation_refused():
    import tflite
    from tflite.BuiltinOptions import BuiltinOptions
    from tflite.BuiltinOperator import BuiltinOperator

    def dilated(b, **kw):
        tflite.Conv2DOptionsStart(b)
        tflite.Conv2DOptionsAddPadding(b, tb.PADDING["VALID"])
        tflite.Conv2DOptionsAddStrideH(b, 1)
        tflite.Conv2DOptionsAddStrideW(b, 1)
        tflite.Conv2DOptionsAddDilationHFactor(b, 2)
        tflite.Conv2DOptionsAddDilationWFactor(b, 2)
        return tflite.Conv2DOptionsEnd(b)

    tb.OPS.setdefault("CONV_2D_DILATED", (BuiltinOperator.CONV_2D, BuiltinOptions.Conv2DOptions,
                                          dilated))
    m = tb.ModelBuilder()
    x = m.tensor([1, 6, 6, 1], np.int8, scale=0.1, zero_point=0)
    w = m.tensor([1, 3, 3, 1], np.int8, data=np.ones((1, 3, 3, 1)), scale=[0.1], zero_point=0)
    y = m.tensor([1, 2, 2, 1], np.int8, scale=0.1, zero_point=0)
    m.op("CONV_2D_DILATED", [x, w, -1], [y])
    _err(m.build([x], [y]), "dilation 2x2 is not supported")


def test_quantize_dequantize_only_at_edges():
    # QUANTIZE int8 -> int8 in the middle
    m = tb.ModelBuilder()
    x = m.tensor([1, 4], np.int8, scale=0.1, zero_point=0)
    y = m.tensor([1, 4], np.int8, scale=0.2, zero_point=3)
    m.op("QUANTIZE", [x], [y])
    _err(m.build([x], [y]), "op 0 (QUANTIZE)", "requantization")
    # DEQUANTIZE whose float result feeds another op
    m = tb.ModelBuilder()
    x = m.tensor([1, 4], np.int8, scale=0.1, zero_point=0)
    f = m.tensor([1, 4], np.float32)
    m.op("DEQUANTIZE", [x], [f])
    y = m.tensor([1, 4], np.int8, scale=0.1, zero_point=0)
    m.op("QUANTIZE", [f], [y])
    _err(m.build([x], [y]), "op 0 (DEQUANTIZE)", "only supported from int8 into a float32 model "
         "output", "op 1 (QUANTIZE)")


def test_all_problems_reported_together():
    """Problems found per op are collected: one run names them all."""
    m = tb.ModelBuilder()
    x = m.tensor([1, 4, 4, 1], np.int8, scale=0.1, zero_point=0)
    y = m.tensor([1, 2, 2, 1], np.int8, scale=0.2, zero_point=0)
    m.op("MAX_POOL_2D", [x], [y], filter=(2, 2), stride=(2, 2))
    s = m.tensor([2], np.int32, data=[1, 4])
    r = m.tensor([1, 4], np.int8, scale=0.2, zero_point=0)
    m.op("RESHAPE", [y, s], [r], new_shape=[1, 4])
    p = m.tensor([1, 4], np.int8, scale=0.5, zero_point=0)
    m.op("SOFTMAX", [r], [p], beta=1.0)
    msg = _err(m.build([x], [p]), "2 problems", "op 0 (MAX_POOL_2D)", "op 2 (SOFTMAX)")
    assert "op 1" not in msg


# ---------------------------------------------------------------------------
# command line

def _cli(*args, cwd=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "host_sim"),
                                         os.path.join(ROOT, "python_lib"),
                                         env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "tinyadapt_host.cli"] + list(args), cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


def test_cli_convert_end_to_end(tmp_path):
    case = cnn_case(np.random.default_rng(31), 0)
    src = tmp_path / "net.tflite"
    src.write_bytes(case.model)
    r = _cli("convert", str(src), "-o", str(tmp_path / "out.tam"), "--trainable", "last")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for stage in ("reading", "parsed", "mapped", "checked", "wrote"):
        assert any(l.startswith("convert: " + stage) for l in lines), r.stdout
    m = tam.load(str(tmp_path / "out.tam"))
    assert [l.op for l in m.layers] == case.ops
    assert any(t.trainable for t in m.tensors)
    got = run_tam(open(str(tmp_path / "out.tam"), "rb").read(), case.draws[0])
    want = tb.run_tflm(case.model, case.draws[0])
    assert all(g.tobytes() == w.tobytes() for g, w in zip(got, want))
    # the file as a board loads it: Model.load, predict
    model = _engine().Model.load(str(tmp_path / "out.tam"))
    assert model.predict(case.draws[0][0].tobytes(), quantized=True) == int(want[1][0])
    # default output name, quiet
    r = _cli("convert", "-q", "net.tflite", cwd=str(tmp_path))
    assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr
    assert (tmp_path / "net.tam").read_bytes() == ct.convert_bytes(case.model, source="net.tflite")


def test_cli_convert_errors(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(_chain_with(["TANH"]))
    r = _cli("convert", str(bad))
    assert r.returncode == 1 and "TANH at op 0" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "bad.tam").exists()
    r = _cli("convert", str(tmp_path / "missing.tflite"))
    assert r.returncode == 1 and "cannot read" in r.stderr
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 100)
    r = _cli("convert", str(junk))
    assert r.returncode == 1 and "not a TFLite model" in r.stderr
    other = tmp_path / "model.onnx"
    other.write_bytes(b"x")
    r = _cli("convert", str(other))
    assert r.returncode == 2 and ".tflite" in r.stderr and ".pt" in r.stderr


def test_cli_convert_torch_dispatch(tmp_path):
    pt = tmp_path / "model.pt"
    pt.write_bytes(b"not really")
    r = _cli("convert", str(pt))
    if importlib.util.find_spec("tinyadapt_host.convert_torch") is None:
        assert r.returncode == 1 and "convert_torch" in r.stderr and "Traceback" not in r.stderr
    else:   # the torch converter exists: it was called (what it says is its own business)
        assert "does not have yet" not in r.stderr and r.returncode != 0


def test_cli_convert_help_documents_every_option():
    r = _cli("convert", "--help")
    assert r.returncode == 0
    for opt in ("MODEL", "-o", "--trainable", "--quiet"):
        assert opt in r.stdout
    from tinyadapt_host import cli
    parser = cli.build_parser()
    sub = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"][0]
    conv = sub.choices["convert"]
    for a in conv._actions:
        assert a.help, "option %s has no help" % a.dest
