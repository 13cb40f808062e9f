"""Trained models for the board tests and tools/bench_models.py, as .tam and as
.tflite.

The models and their training are tinyadapt_host.demo_models (product code,
shared with tools/demo.py). What lives here is what needs the test helper
tests/tflite_builder.py: `tflite_from_tam` writes a model converted from
PyTorch (convert_torch) as an int8 .tflite with tflite_builder's ModelBuilder,
so that TFLite Micro (the bit-exact reference) can run the same integers.

    conv = demo_models.convert(module, calib)          # PyTorch -> .tam
    data = tflite_from_tam(conv.model)                 # .tam -> .tflite (ModelBuilder)
    image = convert_tflite.convert_bytes(data)         # .tflite -> .tam, as any .tflite

The .tflite has the .tam's layers as TFLite ops (CONV_2D, DEPTHWISE_CONV_2D,
MAX_POOL_2D, AVERAGE_POOL_2D, RESHAPE, FULLY_CONNECTED, ADD, SOFTMAX) with the
same int8 weights, int32 biases and float32 scales (per-channel weights along
TFLite's quantized dimension), explicit paddings as SAME or VALID (refused
otherwise), clamps as fused activations, plus an ARG_MAX of the logits. Its
outputs are [probabilities (the softmax), class (ARG_MAX, int32), logits], so
TFLite Micro exposes the logits too. Requantization multipliers are not stored
in a .tflite: TFLite Micro derives them from the scales, as convert_torch did.

`TflmRunner` keeps one TFLite Micro interpreter for many inputs (run_tflm
makes a new one per call).
"""
import numpy as np

import tflite_builder as tb
from tinyadapt_host import convert_tflite as ctl

_ACTS = (("NONE", ctl.ACT_NONE), ("RELU", ctl.ACT_RELU), ("RELU6", ctl.ACT_RELU6))


def _activation(layer, scale, zp):
    """The TFLite fused activation whose clamp is the layer's [act_min, act_max]."""
    for name, code in _ACTS:
        if ctl.activation_range(code, scale, zp) == (layer.act_min, layer.act_max):
            return name
    raise ValueError("layer %s: clamp [%d, %d] is no TFLite fused activation"
                     % (layer.op, layer.act_min, layer.act_max))


def _padding(layer, in_shape, k, out_shape):
    """'SAME' or 'VALID' for the layer's explicit padding, as TFLite computes it."""
    pads = []
    for name, code in (("SAME", ctl.PADDING_SAME), ("VALID", ctl.PADDING_VALID)):
        ok = True
        for ax in (0, 1):
            out, before, after = ctl.padding(code, in_shape[1 + ax], k[ax], layer.stride[ax])
            if (out, before, after) != (out_shape[1 + ax], layer.padding[2 * ax],
                                        layer.padding[2 * ax + 1]):
                ok = False
        if ok:
            pads.append(name)
    if not pads:
        raise ValueError("layer %s: padding %r is neither TFLite SAME nor VALID"
                         % (layer.op, layer.padding))
    return pads[-1]          # VALID where both agree (no padding at all)


def tflite_from_tam(m, description="tinyadapt demo model"):
    """A host tam.Model (one input, ending in softmax, as convert_torch writes
    classifiers) as .tflite bytes; outputs [probs, class, logits]."""
    T = dict((t.id, t) for t in m.tensors)
    b = tb.ModelBuilder()
    idx = {}

    def act(tid, name=None):
        if tid not in idx:
            t = T[tid]
            idx[tid] = b.tensor(t.shape, np.int8, scale=t.scale, zero_point=t.zero_point,
                                name=name or "t%d" % tid)
        return idx[tid]

    def weights(l, qdim):
        w = T[l.weights]
        scales = T[w.scales].data if w.scales is not None else [w.scale]
        in_scale = T[l.input].scale
        wt = b.tensor(w.shape, np.int8, data=w.data, scale=scales, zero_point=0,
                      quantized_dimension=qdim, name="w%d" % l.output)
        bias = T[l.bias]
        bt = b.tensor(bias.shape, np.int32, data=bias.data,
                      scale=[ctl.f32(in_scale) * ctl.f32(s) for s in np.atleast_1d(scales)],
                      zero_point=0, quantized_dimension=0, name="b%d" % l.output)
        return wt, bt

    x = act(m.inputs[0].tensor, "input")
    logits = probs = None
    for i, l in enumerate(m.layers):
        ti, to = T[l.input], T[l.output]
        if l.op == "softmax":
            logits, probs = l.input, l.output
        if l.op in ("conv2d", "depthwise_conv2d"):
            w = T[l.weights]
            k = (w.shape[1], w.shape[2])
            wt, bt = weights(l, 0 if l.op == "conv2d" else 3)
            opts = dict(padding=_padding(l, ti.shape, k, to.shape), stride=tuple(l.stride),
                        activation=_activation(l, to.scale, to.zero_point))
            if l.op == "conv2d":
                b.op("CONV_2D", [act(l.input), wt, bt], [act(l.output)], **opts)
            else:
                b.op("DEPTHWISE_CONV_2D", [act(l.input), wt, bt], [act(l.output)],
                     depth_multiplier=l.depth_multiplier, **opts)
        elif l.op == "fully_connected":
            wt, bt = weights(l, 0)
            b.op("FULLY_CONNECTED", [act(l.input), wt, bt], [act(l.output)],
                 activation=_activation(l, to.scale, to.zero_point))
        elif l.op in ("max_pool", "avg_pool"):
            b.op("MAX_POOL_2D" if l.op == "max_pool" else "AVERAGE_POOL_2D",
                 [act(l.input)], [act(l.output)],
                 padding=_padding(l, ti.shape, l.filter, to.shape), stride=tuple(l.stride),
                 filter=tuple(l.filter), activation=_activation(l, to.scale, to.zero_point))
        elif l.op == "reshape":
            shp = b.tensor([len(to.shape)], np.int32, data=list(to.shape),
                           name="shape%d" % l.output)
            b.op("RESHAPE", [act(l.input), shp], [act(l.output)], new_shape=list(to.shape))
        elif l.op == "add":
            b.op("ADD", [act(l.input), act(l.input2)], [act(l.output)],
                 activation=_activation(l, to.scale, to.zero_point))
        elif l.op == "softmax":
            b.op("SOFTMAX", [act(l.input)], [act(l.output, "probs")], beta=1.0)
        else:
            raise ValueError("layer %d: %s has no TFLite op here" % (i, l.op))
    if probs is None:
        raise ValueError("the model does not end in a softmax")
    ax = b.tensor([1], np.int32, data=[len(T[logits].shape) - 1], name="argmax/axis")
    cls = b.tensor([T[logits].shape[0]], np.int32, name="class")
    b.op("ARG_MAX", [act(logits), ax], [cls])
    return b.build([x], [act(probs), cls, act(logits)], description=description)


class TflmRunner:
    """One TFLite Micro interpreter (reference kernels) for many inputs:
    `run(x)` -> list of output arrays (copies)."""

    def __init__(self, model_bytes, arena_size=None):
        from tflite_micro.python.tflite_micro import runtime
        if arena_size is None:
            arena_size = max(1 << 20, 16 * len(model_bytes))
        self.interp = runtime.Interpreter.from_bytes(bytes(model_bytes), arena_size=arena_size)
        import tflite
        sg = tflite.Model.GetRootAs(model_bytes, 0).Subgraphs(0)
        self.n_out = sg.OutputsLength()
        self.input_shape = tuple(sg.Tensors(sg.Inputs(0)).ShapeAsNumpy())

    def run(self, x):
        self.interp.set_input(np.ascontiguousarray(x).reshape(self.input_shape), 0)
        self.interp.invoke()
        return [np.array(self.interp.get_output(i), copy=True) for i in range(self.n_out)]
