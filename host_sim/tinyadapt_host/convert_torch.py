"""PyTorch nn.Module -> .tam, with TFLite-style post-training int8 quantization.

    from tinyadapt_host.convert_torch import convert_module
    conv = convert_module(model, calib_x, input_shape=(1, 28, 28), path="fmnist.tam",
                          labels=FASHION_MNIST_LABELS)
    conv.quantize_input(x_test)      # float, PyTorch layout -> int8, .tam layout

What it takes (docs/convert_torch.md has the details and the reasons):

* The module is traced with torch.fx (`symbolic_trace`) and its shapes are
  propagated on a batch of zeros, so `forward` must be a fixed graph: no
  data-dependent control flow. nn.Sequential and plain residual blocks
  (`x + f(x)`) are that.
* Layers: Conv2d (groups 1, or depthwise: groups == in_channels with any depth
  multiplier; dilation 1; zero padding 'same', 'valid' or symmetric ints
  p <= k - 1), BatchNorm2d folded into the Conv2d before it (BatchNorm1d into a
  Linear), ReLU / ReLU6 / Hardtanh(0, 6) fused as clamps into the conv, linear,
  add or pool before them, MaxPool2d, AvgPool2d (no padding, or
  count_include_pad=False), AdaptiveAvgPool2d(1) and `x.mean((2, 3))` (global
  average pooling), Flatten / `torch.flatten(x, 1)` / `x.view(n, -1)`, Linear,
  `a + b` of two same-shape tensors, Softmax over the last axis of a 2-D tensor,
  Identity and Dropout (dropped). Anything else raises `UnsupportedModuleError`
  naming every offending module or function.
* Layout: the .tam is NHWC (TFLite's). A 4-D PyTorch value (N, C, H, W) becomes
  (1, H, W, C); Flatten then yields H x W x C order, so the columns of the
  Linear after it are permuted from PyTorch's C x H x W order when written.
* Quantization, TFLite's scheme: weights int8 symmetric per output channel
  (scale = max|w| / 127, values rounded half away from zero to [-127, 127]);
  bias int32 with scale in_scale x w_scale; activations int8 asymmetric from the
  range observed on `calib_data` (min/max over all samples by default, or a
  percentile), widened to include 0, scale = (max - min) / 255 and the zero
  point nudged to an integer as TFLite's converter does; requantization
  multipliers and shifts by QuantizeMultiplier of the double product of the
  float32 scales (TFLite Micro's Prepare); ADD and SOFTMAX parameters as
  TFLite computes them; pooling and reshape keep their input's quantization.
* Softmax: by default (softmax=True) a SOFTMAX layer is appended when the module
  does not end with one, so the file ends like a TFLite classifier (output int8,
  scale 1/256, zero point -128); its input is the logits tensor, named in the
  metadata ("logits"). softmax=False keeps the module's own ending.

The CLI hook (`convert_file(src, dst, log=None, **options)`, what `tinyadapt
convert` calls for .py/.pt/.pth): a Python file that defines `build()` returning
`(module, calib_data)` or `(module, calib_data, options)`, options being keyword
arguments of `convert_module` (input_shape, labels, softmax, calibration,
trainable, ...); or a .pt/.pth saved with torch.save({"module": m,
"calib_data": x, "options": {...}}). `python -m tinyadapt_host.convert_torch
model.py out.tam` runs it too.
"""
import copy
import json
import math
import operator
import os
import struct
import sys

import numpy as np

from . import tam

__all__ = ["convert_module", "convert_file", "fold", "FloatGraph", "Conversion",
           "ConversionError", "UnsupportedModuleError", "choose_qparams",
           "quantize_weights_per_channel", "to_tam_layout", "main"]

I8_MIN, I8_MAX = -128, 127
I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1
ADD_LEFT_SHIFT = 20          # TFLite's int8 ADD headroom (CalculateOpDataAdd)
SOFTMAX_SCALE, SOFTMAX_ZP = 1.0 / 256.0, -128
_CALIB_BATCH = 256


class ConversionError(ValueError):
    """The module cannot be converted as it is (the message says why and where)."""


class UnsupportedModuleError(ConversionError):
    """The module uses layers or functions the converter does not support; the
    message names each of them (`.offenders` lists them)."""

    def __init__(self, offenders):
        self.offenders = list(offenders)
        ConversionError.__init__(
            self, "unsupported by the .tam converter: " + "; ".join(self.offenders)
            + " (supported: Conv2d, depthwise Conv2d, BatchNorm2d after a conv, ReLU, ReLU6, "
              "MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1), Flatten, Linear, a + b, Softmax, "
              "Identity, Dropout; see docs/convert_torch.md)")


def _torch():
    try:
        import torch
    except ImportError as e:
        raise ImportError("the PyTorch converter needs torch (pip install -r requirements.txt; "
                          "use torch==2.13.0, the CPU build): %s" % e) from None
    return torch


def _f32(x):
    """x rounded to float32 (what the file stores), as a Python float."""
    return struct.unpack("<f", struct.pack("<f", float(x)))[0]


def _round_half_away(a):
    """TfLiteRound (std::round): halves away from zero."""
    a = np.asarray(a, dtype=np.float64)
    return np.sign(a) * np.floor(np.abs(a) + 0.5)


# ----------------------------------------------------------------------------------
# quantization rules


def choose_qparams(lo, hi):
    """(scale, zero_point) of an int8 activation observed in [lo, hi], TFLite's
    converter rule (GetNudgedScaleAndZeroPoint / fakeQuantAttrsToType, qmin -128,
    qmax 127, no narrow range): the range is widened to include 0; scale =
    (hi - lo) / 255; zero_point = qmin - lo / scale, nudged to an integer in
    [qmin, qmax] (rounded half away from zero). An all-zero range gets scale 1,
    zero point 0. The scale is returned rounded to float32, as stored."""
    lo = min(float(lo), 0.0)
    hi = max(float(hi), 0.0)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ConversionError("activation range [%r, %r] is not finite" % (lo, hi))
    if hi - lo < sys.float_info.epsilon:
        return 1.0, 0
    scale = (hi - lo) / (I8_MAX - I8_MIN)
    zp_from_min = I8_MIN - lo / scale
    if zp_from_min < I8_MIN:
        zp = I8_MIN
    elif zp_from_min > I8_MAX:
        zp = I8_MAX
    else:
        zp = int(_round_half_away(zp_from_min))
    return _f32(scale), zp


def quantize_weights_per_channel(w, axis=0):
    """Symmetric per-channel int8 weights (TFLite SymmetricPerChannelQuantization):
    scale[c] = max|w[c]| / 127 (1.0 for an all-zero channel), rounded to float32;
    q = clamp(round_half_away(w / scale[c]), -127, 127). Returns (q int8, scales
    float32)."""
    w = np.asarray(w, dtype=np.float64)
    wm = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    rng = np.abs(wm).max(axis=1)
    scales = np.where(rng > 0, rng / 127.0, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(_round_half_away(w / scales.astype(np.float64).reshape(shape)), -127, 127)
    return q.astype(np.int8), scales


def _quantize_bias(b, in_scale, w_scales):
    """int32 bias, scale in_scale x w_scale[o] (double product of the float32
    scales), rounded half away from zero, saturated to int32."""
    s = _f32(in_scale) * w_scales.astype(np.float64)
    return np.clip(_round_half_away(np.asarray(b, dtype=np.float64) / s), I32_MIN, I32_MAX).astype(np.int32)


def _multipliers(in_scale, w_scales, out_scale, what):
    """Per-channel (mult, shift) int32 arrays: QuantizeMultiplier of
    double(in_scale) x double(w_scale[c]) / double(out_scale), TFLite Micro's
    PopulateConvolutionQuantizationParams."""
    from _tinyadapt import quantize_multiplier
    mult, shift = [], []
    i_s, o_s = _f32(in_scale), _f32(out_scale)
    for ws in w_scales:
        m, s = quantize_multiplier(i_s * float(ws) / o_s)
        if s > 30:
            raise ConversionError("%s: requantization multiplier %g too large"
                                  % (what, i_s * float(ws) / o_s))
        mult.append(m)
        shift.append(s)
    return np.array(mult, dtype=np.int32), np.array(shift, dtype=np.int32)


def _quantize_value(scale, zp, f):
    """kernel_util.cc Quantize: zp + round_half_away(float32(f) / float32(scale))."""
    return int(zp) + int(_round_half_away(float(np.float32(f) / np.float32(scale))))


def _act_range(act, scale, zp):
    """CalculateActivationRangeQuantized for int8: the fused activation's clamp."""
    if act == "relu":
        return max(I8_MIN, _quantize_value(scale, zp, 0.0)), I8_MAX
    if act == "relu6":
        return (max(I8_MIN, _quantize_value(scale, zp, 0.0)),
                min(I8_MAX, _quantize_value(scale, zp, 6.0)))
    return I8_MIN, I8_MAX


def _smaller_than_one(real, what):
    from _tinyadapt import quantize_multiplier
    if not 0.0 < real < 1.0:
        raise ConversionError("%s: multiplier %r outside (0, 1) (scales too far apart)" % (what, real))
    m, s = quantize_multiplier(real)
    if s < -31:
        raise ConversionError("%s: multiplier %r too small" % (what, real))
    return m, s


def _add_params(s1, s2, so, what):
    """TFLite int8 ADD (CalculateOpDataAdd): twice_max = 2 max(s1, s2); input
    multipliers from s_k / twice_max, output from twice_max / (2^20 s_out), each by
    QuantizeMultiplierSmallerThanOneExp, in double from the float32 scales."""
    s1, s2, so = _f32(s1), _f32(s2), _f32(so)
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = _smaller_than_one(s1 / twice_max, what)
    m2, sh2 = _smaller_than_one(s2 / twice_max, what)
    mo, sho = _smaller_than_one(twice_max / (float(1 << ADD_LEFT_SHIFT) * so), what)
    return (ADD_LEFT_SHIFT, m1, sh1, m2, sh2, mo, sho)


def to_tam_layout(x):
    """A float or int array in PyTorch layout (N, C, H, W) as the .tam holds it
    (N, H, W, C); other ranks are unchanged."""
    x = np.asarray(x)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x


# ----------------------------------------------------------------------------------
# the graph: trace, map to ops, fold, fuse


class _Value:
    """A tensor between ops: PyTorch shape (batch first), quantization, tam id."""

    def __init__(self, name, shape):
        self.name = name
        self.shape = tuple(int(d) for d in shape)
        self.perm = None          # (C, H, W) when a flatten left H x W x C order
        self.scale = None
        self.zp = None
        self.tid = None
        self.lo = None
        self.hi = None

    def tam_shape(self):
        s = (1,) + self.shape[1:]
        if len(s) == 4:
            s = (1, s[2], s[3], s[1])
        return s


class _Op:
    def __init__(self, kind, inputs, output, label, node, **p):
        self.kind = kind
        self.inputs = list(inputs)
        self.output = output
        self.labels = [label]
        self.nodes = [node]
        self.act = "none"
        self.p = p

    @property
    def label(self):
        return " + ".join(self.labels)


_WEIGHTED = ("conv", "dwconv", "linear")
_ACT_TARGETS = ("conv", "dwconv", "linear", "add", "maxpool", "avgpool", "gap")


def _targets():
    torch = _torch()
    F = torch.nn.functional
    return {
        "add": {operator.add, operator.iadd, torch.add},
        "relu": {F.relu, torch.relu, torch.relu_},
        "relu6": {F.relu6},
        "flatten": {torch.flatten},
        "gap": {F.adaptive_avg_pool2d},
        "mean": {torch.mean},
        "softmax": {F.softmax, torch.softmax},
        "dropout": {F.dropout},
    }


def _fn_name(t):
    mod = getattr(t, "__module__", None) or ""
    name = getattr(t, "__name__", repr(t))
    return "%s.%s" % (mod, name) if mod else name


def _is_tensor(node):
    from torch.fx.passes.shape_prop import TensorMetadata
    return isinstance(node.meta.get("tensor_meta"), TensorMetadata)


def _shape(node):
    return tuple(node.meta["tensor_meta"].shape)


def _pair(v):
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class _Builder:
    """Maps a traced GraphModule to a list of _Op (before folding and fusion)."""

    def __init__(self, gm):
        self.gm = gm
        self.mods = dict(gm.named_modules())
        self.values = {}          # value name -> _Value
        self.of = {}              # fx node name -> value name (aliases resolve here)
        self.ops = []
        self.bad = []
        self.input = None
        self.output = None
        self.T = _targets()

    def val(self, node, label):
        torch_fx = sys.modules["torch.fx"]
        if not isinstance(node, torch_fx.Node) or node.name not in self.of:
            raise ConversionError("%s: operand %r is not a tensor of the graph (constants and "
                                  "parameters used in forward are not supported)" % (label, node))
        return self.of[node.name]

    def new(self, node, shape=None):
        v = _Value(node.name, _shape(node) if shape is None else shape)
        self.values[v.name] = v
        self.of[node.name] = v.name
        return v.name

    def op(self, kind, node, inputs, label, **p):
        out = self.new(node)
        self.ops.append(_Op(kind, inputs, out, label, node.name, **p))
        return out

    def alias(self, node, src):
        self.of[node.name] = self.of[src.name]

    def run(self):
        for node in self.gm.graph.nodes:
            try:
                self.node(node)
            except _Unsupported as e:
                self.bad.append(str(e))
                if _is_tensor(node) and node.name not in self.of:
                    self.new(node)        # a stand-in, so that every offender gets named
            except ConversionError:
                if self.bad:              # most likely a consequence: name the cause
                    raise UnsupportedModuleError(self.bad) from None
                raise
        if self.bad:
            raise UnsupportedModuleError(self.bad)
        return self

    def node(self, node):
        if node.op == "placeholder":
            if self.input is not None:
                raise ConversionError("the module takes more than one input (%s, %s)"
                                      % (self.input, node.name))
            self.input = self.new(node)
            return
        if node.op == "output":
            res = node.args[0]
            if not hasattr(res, "name") or res.name not in self.of:
                raise ConversionError("the module must return one tensor, not %r" % (res,))
            self.output = self.of[res.name]
            return
        if node.op == "get_attr":
            raise _Unsupported("parameter or buffer %r used directly in forward (node %s)"
                               % (node.target, node.name))
        if not _is_tensor(node):
            # sizes (x.size(0), x.shape[...]) only feed view/reshape arguments
            if node.op == "call_method" and node.target == "size" or \
                    node.op == "call_function" and node.target in (operator.getitem, getattr):
                return
            raise _Unsupported("%s (node %s) does not produce a tensor" % (self.describe(node), node.name))
        if node.op == "call_module":
            self.module(node)
        elif node.op == "call_function":
            self.function(node)
        elif node.op == "call_method":
            self.method(node)
        else:
            raise _Unsupported("%s (node %s)" % (self.describe(node), node.name))

    def describe(self, node):
        if node.op == "call_module":
            return "module %r (%s)" % (node.target, type(self.mods[node.target]).__name__)
        if node.op == "call_function":
            return "function %s" % _fn_name(node.target)
        if node.op == "call_method":
            return "method Tensor.%s" % node.target
        return "%s %s" % (node.op, node.target)

    # -- modules

    def module(self, node):
        nn = _torch().nn
        m = self.mods[node.target]
        label = "module %r (%s)" % (node.target, type(m).__name__)
        x = node.args[0] if node.args else None
        if len(node.args) != 1 or node.kwargs:
            raise _Unsupported("%s called with %d arguments" % (label, len(node.args) + len(node.kwargs)))
        xin = self.val(x, label)
        ishape = self.values[xin].shape
        if isinstance(m, (nn.Identity, nn.modules.dropout._DropoutNd)):     # eval: no-ops
            return self.alias(node, x)
        if type(m) is nn.Conv2d:
            return self.conv(node, m, xin, ishape, label)
        if type(m) is nn.Linear:
            if len(ishape) != 2:
                raise _Unsupported("%s on a %d-D input (Flatten first)" % (label, len(ishape)))
            b = m.bias.detach().double().numpy() if m.bias is not None else np.zeros(m.out_features)
            return self.op("linear", node, [xin], label, w=m.weight.detach().double().numpy().copy(),
                           b=b.copy())
        if type(m) in (nn.BatchNorm2d, nn.BatchNorm1d):
            if m.running_mean is None or m.running_var is None:
                raise _Unsupported("%s without running statistics (track_running_stats=False)" % label)
            if type(m) is nn.BatchNorm1d and len(ishape) != 2:
                raise _Unsupported("%s on a %d-D input" % (label, len(ishape)))
            inv = 1.0 / np.sqrt(m.running_var.detach().double().numpy() + m.eps)
            g = m.weight.detach().double().numpy() if m.weight is not None else np.ones_like(inv)
            beta = m.bias.detach().double().numpy() if m.bias is not None else np.zeros_like(inv)
            mul = g * inv
            add = beta - m.running_mean.detach().double().numpy() * mul
            return self.op("bn", node, [xin], label, mul=mul, add=add, dims=type(m).__name__)
        if type(m) is nn.ReLU:
            return self.op("relu", node, [xin], label)
        if type(m) is nn.ReLU6 or (type(m) is nn.Hardtanh and m.min_val == 0.0 and m.max_val == 6.0):
            return self.op("relu6", node, [xin], label)
        if type(m) in (nn.MaxPool2d, nn.AvgPool2d):
            return self.pool(node, m, xin, ishape, label)
        if type(m) is nn.AdaptiveAvgPool2d:
            size = m.output_size
            if not (size == 1 or (isinstance(size, (tuple, list)) and tuple(size) == (1, 1))):
                raise _Unsupported("%s with output_size %r (only 1: global average pooling)"
                                   % (label, m.output_size))
            return self.gap(node, xin, ishape, label, keepdim=True)
        if type(m) is nn.Flatten:
            if m.start_dim != 1 or m.end_dim != -1:
                raise _Unsupported("%s with start_dim %d, end_dim %d (only 1, -1)"
                                   % (label, m.start_dim, m.end_dim))
            return self.flatten(node, x, xin, ishape, label)
        if type(m) is nn.Softmax:
            return self.softmax(node, xin, ishape, m.dim, label)
        raise _Unsupported(label)

    def conv(self, node, m, xin, ishape, label):
        if len(ishape) != 4:
            raise _Unsupported("%s on a %d-D input" % (label, len(ishape)))
        if tuple(m.dilation) != (1, 1):
            raise _Unsupported("%s with dilation %r (only 1)" % (label, tuple(m.dilation)))
        if m.padding_mode != "zeros":
            raise _Unsupported("%s with padding_mode %r (only 'zeros')" % (label, m.padding_mode))
        cin, cout = m.in_channels, m.out_channels
        if m.groups == 1:
            kind = "conv"
        elif m.groups == cin and cout % cin == 0:
            kind = "dwconv"
        else:
            raise _Unsupported("%s with groups=%d (only 1, or in_channels for depthwise)"
                               % (label, m.groups))
        kh, kw = m.kernel_size
        sh, sw = m.stride
        _, _, ih, iw = ishape
        _, _, oh, ow = _shape(node)
        if isinstance(m.padding, str):
            # torch's 'same' exists for stride 1 only; it pads total // 2 before,
            # as TFLite's SAME does
            if m.padding == "same":
                th, tw = kh - 1, kw - 1
                pad = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
            else:
                pad = (0, 0, 0, 0)
            tpad = m.padding
        else:
            ph, pw = m.padding
            if ph > kh - 1 or pw > kw - 1:
                raise _Unsupported("%s with padding %r larger than kernel - 1 (windows entirely "
                                   "in the padding)" % (label, (ph, pw)))
            pad = (ph, ph, pw, pw)
            tpad = (ph, pw)
        for n, k, s, pa, pb, o, axis in ((ih, kh, sh, pad[0], pad[1], oh, "height"),
                                         (iw, kw, sw, pad[2], pad[3], ow, "width")):
            if (n + pa + pb - k) // s + 1 != o:
                raise ConversionError("%s: output %s %d does not follow from the padding"
                                      % (label, axis, o))
        b = m.bias.detach().double().numpy().copy() if m.bias is not None else np.zeros(cout)
        return self.op(kind, node, [xin], label, w=m.weight.detach().double().numpy().copy(), b=b,
                       stride=(sh, sw), k=(kh, kw), pad=pad, tpad=tpad, groups=m.groups,
                       dm=cout // cin)

    def pool(self, node, m, xin, ishape, label):
        nn = _torch().nn
        if len(ishape) != 4:
            raise _Unsupported("%s on a %d-D input" % (label, len(ishape)))
        k = _pair(m.kernel_size)
        s = _pair(m.stride if m.stride is not None else m.kernel_size)
        p = _pair(m.padding)
        if m.ceil_mode:
            raise _Unsupported("%s with ceil_mode=True" % label)
        if type(m) is nn.MaxPool2d:
            if _pair(m.dilation) != (1, 1) or m.return_indices:
                raise _Unsupported("%s with dilation or return_indices" % label)
            kind = "maxpool"
        else:
            if m.divisor_override is not None:
                raise _Unsupported("%s with divisor_override" % label)
            if p != (0, 0) and m.count_include_pad:
                raise _Unsupported("%s with padding and count_include_pad=True (TFLite averages "
                                   "over the cells inside the image: set count_include_pad=False)"
                                   % label)
            kind = "avgpool"
        if max(k) > 255 or max(s) > 255:
            raise _Unsupported("%s with a window or stride above 255" % label)
        return self.op(kind, node, [xin], label, k=k, stride=s, pad=(p[0], p[0], p[1], p[1]), tpad=p)

    def gap(self, node, xin, ishape, label, keepdim):
        if len(ishape) != 4:
            raise _Unsupported("%s on a %d-D input" % (label, len(ishape)))
        n, c, h, w = ishape
        if h > 255 or w > 255:
            raise _Unsupported("%s over %dx%d (the window is at most 255x255)" % (label, h, w))
        if keepdim:
            return self.op("gap", node, [xin], label)
        mid = _Value(node.name + "__gap", (n, c, 1, 1))
        self.values[mid.name] = mid
        self.ops.append(_Op("gap", [xin], mid.name, label, node.name))
        out = self.new(node)
        self.ops.append(_Op("flatten", [mid.name], out, label, node.name))
        return out

    def flatten(self, node, x, xin, ishape, label):
        oshape = _shape(node)
        if oshape == ishape:
            return self.alias(node, x)
        if len(oshape) != 2 or oshape[0] != ishape[0]:
            raise _Unsupported("%s to shape %r (only flattening all but the batch)" % (label, oshape))
        return self.op("flatten", node, [xin], label)

    def softmax(self, node, xin, ishape, dim, label):
        if len(ishape) != 2 or dim not in (1, -1):
            raise _Unsupported("%s over dim %r of a %d-D tensor (only the last axis of (N, C))"
                               % (label, dim, len(ishape)))
        if ishape[1] > 511:
            raise _Unsupported("%s over %d classes (the kernel takes at most 511)" % (label, ishape[1]))
        return self.op("softmax", node, [xin], label)

    # -- functions and methods

    def _add(self, node, a, b, label, kwargs):
        if kwargs:
            raise _Unsupported("%s with %s" % (label, ", ".join(sorted(kwargs))))
        tn = sys.modules["torch.fx"].Node
        if not (isinstance(a, tn) and isinstance(b, tn)):
            raise _Unsupported("%s with a constant operand (only tensor + tensor)" % label)
        ia, ib = self.val(a, label), self.val(b, label)
        if self.values[ia].shape != self.values[ib].shape:
            raise _Unsupported("%s of shapes %r and %r (no broadcasting)"
                               % (label, self.values[ia].shape, self.values[ib].shape))
        return self.op("add", node, [ia, ib], label)

    def function(self, node):
        t = node.target
        label = "function %s (node %s)" % (_fn_name(t), node.name)
        T = self.T
        args = list(node.args)
        if t in T["add"]:
            return self._add(node, args[0], args[1], label, node.kwargs)
        x = args[0] if args else None
        if t in T["dropout"]:
            return self.alias(node, x)
        xin = self.val(x, label)
        ishape = self.values[xin].shape
        if t in T["relu"]:
            return self.op("relu", node, [xin], label)
        if t in T["relu6"]:
            return self.op("relu6", node, [xin], label)
        if t in T["flatten"]:
            return self.flatten(node, x, xin, ishape, label)
        if t in T["gap"]:
            size = args[1] if len(args) > 1 else node.kwargs.get("output_size")
            if size not in (1, (1, 1), [1, 1]):
                raise _Unsupported("%s with output_size %r (only 1)" % (label, size))
            return self.gap(node, xin, ishape, label, keepdim=True)
        if t in T["mean"]:
            return self.mean(node, xin, ishape, args[1:], node.kwargs, label)
        if t in T["softmax"]:
            dim = args[1] if len(args) > 1 else node.kwargs.get("dim")
            return self.softmax(node, xin, ishape, dim, label)
        raise _Unsupported(label)

    def mean(self, node, xin, ishape, args, kwargs, label):
        dims = args[0] if args else kwargs.get("dim")
        keep = args[1] if len(args) > 1 else kwargs.get("keepdim", False)
        dims = sorted(d % 4 for d in np.atleast_1d(dims).tolist()) if dims is not None else None
        if len(ishape) != 4 or dims != [2, 3]:
            raise _Unsupported("%s over dims %r (only (2, 3) of an NCHW tensor)" % (label, dims))
        return self.gap(node, xin, ishape, label, keepdim=bool(keep))

    def method(self, node):
        t = node.target
        label = "method Tensor.%s (node %s)" % (t, node.name)
        args = list(node.args)
        x = args[0]
        if t in ("add", "add_"):
            return self._add(node, x, args[1], label, node.kwargs)
        if t == "contiguous":
            return self.alias(node, x)
        xin = self.val(x, label)
        ishape = self.values[xin].shape
        if t in ("relu", "relu_"):
            return self.op("relu", node, [xin], label)
        if t in ("view", "reshape", "flatten", "squeeze"):
            # judged by the traced shapes: (N, ...) -> (N, prod(...)) is a flatten
            return self.flatten(node, x, xin, ishape, label)
        if t == "mean":
            return self.mean(node, xin, ishape, args[1:], node.kwargs, label)
        if t == "softmax":
            dim = args[1] if len(args) > 1 else node.kwargs.get("dim")
            return self.softmax(node, xin, ishape, dim, label)
        raise _Unsupported(label)


class _Unsupported(Exception):
    pass


def _fuse(ops, output):
    """Fold BatchNorm into the conv/linear before it and fuse ReLU/ReLU6 into the
    op before it. Either needs that op's output to have no other user."""
    uses = {}
    for op in ops:
        for i in op.inputs:
            uses[i] = uses.get(i, 0) + 1
    uses[output] = uses.get(output, 0) + 1
    producer = {}
    kept = []
    for op in ops:
        src = producer.get(op.inputs[0])
        alone = src is not None and uses.get(src.output, 0) == 1
        if op.kind == "bn":
            want = ("linear",) if op.p["dims"] == "BatchNorm1d" else ("conv", "dwconv")
            if not (alone and src.kind in want and src.act == "none"):
                raise ConversionError(
                    "%s: a %s is folded into the %s right before it, whose output nothing else "
                    "uses; here it follows %s" % (op.label, op.p["dims"], " or ".join(want),
                                                 src.label if src else "the model input"))
            mul, add = op.p["mul"], op.p["add"]
            shape = (-1,) + (1,) * (src.p["w"].ndim - 1)
            src.p["w"] = src.p["w"] * mul.reshape(shape)
            src.p["b"] = src.p["b"] * mul + add
        elif op.kind in ("relu", "relu6"):
            if not (alone and src.kind in _ACT_TARGETS and src.act == "none"):
                raise ConversionError(
                    "%s: a ReLU is fused into the conv, linear, add or pool right before it, "
                    "whose output nothing else uses; here it follows %s"
                    % (op.label, src.label if src else "the model input"))
            src.act = op.kind
        else:
            kept.append(op)
            producer[op.output] = op
            continue
        src.output = op.output
        src.labels += op.labels
        src.nodes += op.nodes
        producer[op.output] = src
    return kept


def _check_layouts(ops, values, output):
    """A flatten of a 4-D (N, C, H, W) value with C > 1 and H x W > 1 leaves the
    .tam's values in H x W x C order: only a Linear can read that (its weight
    columns are permuted to match); flattening again is a no-op."""
    for op in ops:
        src = values[op.inputs[0]]
        if op.kind == "flatten":
            if len(src.shape) == 4:
                _, c, h, w = src.shape
                if c > 1 and h * w > 1:
                    values[op.output].perm = (c, h, w)
            else:
                values[op.output].perm = src.perm
        for i in op.inputs:
            v = values[i]
            if v.perm is not None and op.kind not in ("linear", "flatten"):
                raise ConversionError("%s reads a flattened C x H x W tensor %r: in the .tam it is "
                                      "H x W x C, which only a Linear (or Flatten) can take"
                                      % (op.label, v.name))
    if values[output].perm is not None:
        raise ConversionError("the model output is a flattened C x H x W tensor; in the .tam it "
                              "would be H x W x C: end with a Linear")


# ----------------------------------------------------------------------------------
# the float graph


class FloatGraph:
    """The module as the converter sees it: BatchNorm folded, activations fused,
    float32, PyTorch layout (NCHW). `graph(x)` gives the output, `activations(x)`
    every value by name (the fx node that produces it; fused chains are named by
    their last node). `ops` lists (kind, label, input names, output name)."""

    def __init__(self, ops, values, input, output, source):
        torch = _torch()
        self._ops = ops
        self.values = values
        self.input = input
        self.output = output
        self.source = source
        for op in ops:
            if op.kind in _WEIGHTED:
                op.tw = torch.from_numpy(op.p["w"].astype(np.float32))
                op.tb = torch.from_numpy(op.p["b"].astype(np.float32))

    @property
    def ops(self):
        return [(op.kind, op.label, list(op.inputs), op.output) for op in self._ops]

    def _run(self, x):
        torch = _torch()
        F = torch.nn.functional
        env = {self.input: torch.as_tensor(np.asarray(x, dtype=np.float32))}
        with torch.no_grad():
            for op in self._ops:
                a = env[op.inputs[0]]
                if op.kind in ("conv", "dwconv"):
                    y = F.conv2d(a, op.tw, op.tb, op.p["stride"], op.p["tpad"], 1, op.p["groups"])
                elif op.kind == "linear":
                    y = F.linear(a, op.tw, op.tb)
                elif op.kind == "maxpool":
                    y = F.max_pool2d(a, op.p["k"], op.p["stride"], op.p["tpad"])
                elif op.kind == "avgpool":
                    y = F.avg_pool2d(a, op.p["k"], op.p["stride"], op.p["tpad"],
                                     count_include_pad=False)
                elif op.kind == "gap":
                    y = a.mean((2, 3), keepdim=True)
                elif op.kind == "flatten":
                    y = a.reshape(a.shape[0], -1)
                elif op.kind == "add":
                    y = a + env[op.inputs[1]]
                elif op.kind == "softmax":
                    y = F.softmax(a, dim=-1)
                else:
                    raise AssertionError(op.kind)
                if op.act == "relu":
                    y = torch.clamp(y, min=0.0)
                elif op.act == "relu6":
                    y = torch.clamp(y, 0.0, 6.0)
                env[op.output] = y
        return env

    def __call__(self, x):
        return self._run(x)[self.output]

    def activations(self, x):
        return self._run(x)


def _trace(module, input_shape):
    torch = _torch()
    import torch.fx
    from torch.fx.passes.shape_prop import ShapeProp
    if not isinstance(module, torch.nn.Module):
        raise ConversionError("expected a torch.nn.Module, got %s" % type(module).__name__)
    m = copy.deepcopy(module).to("cpu", torch.float32).eval()
    try:
        gm = torch.fx.symbolic_trace(m)
    except Exception as e:
        raise ConversionError("torch.fx cannot trace %s (%s: %s); the converter takes modules whose "
                              "forward is a fixed graph of supported layers"
                              % (type(module).__name__, type(e).__name__, e)) from None
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(torch.zeros((2,) + tuple(input_shape)))
    except Exception as e:
        raise ConversionError("%s does not run on an input of shape %r: %s"
                              % (type(module).__name__, (2,) + tuple(input_shape), e)) from None
    return gm


def fold(module, input_shape):
    """The FloatGraph of `module` for per-sample `input_shape` (PyTorch layout, no
    batch): what the converter quantizes."""
    input_shape = tuple(int(d) for d in input_shape)
    gm = _trace(module, input_shape)
    b = _Builder(gm).run()
    if b.input is None or b.output is None:
        raise ConversionError("the module has no input or no output")
    if b.output == b.input:
        raise ConversionError("the module computes nothing (its output is its input)")
    ops = _fuse(b.ops, b.output)
    _check_layouts(ops, b.values, b.output)
    for op in ops:
        for i in op.inputs:
            if len(b.values[i].shape) > 4:
                raise ConversionError("%s: %d-D tensors are not supported" % (op.label, len(b.values[i].shape)))
    return FloatGraph(ops, b.values, b.input, b.output, type(module).__name__)


# ----------------------------------------------------------------------------------
# calibration and writing


def _calibrate(graph, calib, rule):
    """Per value (lo, hi) over all calibration samples: "minmax" or a percentile p
    (lo = the (100 - p)th, hi = the pth percentile of all the value's elements)."""
    names = [graph.input] + [op.output for op in graph._ops]
    if rule == "minmax":
        lo = dict((n, math.inf) for n in names)
        hi = dict((n, -math.inf) for n in names)
        for i in range(0, len(calib), _CALIB_BATCH):
            env = graph.activations(calib[i:i + _CALIB_BATCH])
            for n in names:
                a = env[n]
                lo[n] = min(lo[n], float(a.min()))
                hi[n] = max(hi[n], float(a.max()))
        return dict((n, (lo[n], hi[n])) for n in names)
    p = float(rule)
    if not 50.0 < p <= 100.0:
        raise ValueError("calibration percentile must be in (50, 100], not %r" % rule)
    parts = dict((n, []) for n in names)
    for i in range(0, len(calib), _CALIB_BATCH):
        env = graph.activations(calib[i:i + _CALIB_BATCH])
        for n in names:
            parts[n].append(env[n].numpy().ravel())
    out = {}
    for n in names:
        a = np.concatenate(parts[n])
        out[n] = (float(np.percentile(a, 100.0 - p)), float(np.percentile(a, p)))
    return out


class Conversion:
    """What convert_module wrote: `model` (tam.Model), `path`, `graph` (the
    FloatGraph that was quantized), `input` / `output` (tam.IOSpec), `logits`
    (tensor id of the last tensor before the softmax), `tensor_of` (fx node
    name -> tensor id of the activation it produced), `node_of` (the inverse),
    `ranges` (node name -> calibrated (lo, hi)), `metadata` (dict)."""

    def __init__(self, model, path, graph, input_shape, tensor_of, ranges, logits, metadata):
        self.model = model
        self.path = path
        self.graph = graph
        self.input_shape = input_shape
        self.input = model.inputs[0]
        self.output = model.outputs[0]
        self.tensor_of = tensor_of
        self.node_of = dict((t, n) for n, t in tensor_of.items())
        self.ranges = ranges
        self.logits = logits
        self.metadata = metadata

    def quantize_input(self, x):
        """float samples in PyTorch layout (n, *input_shape) -> int8 in the .tam
        layout (n, H, W, C): q = clamp(round_half_away(x / scale) + zero_point),
        TFLite's QUANTIZE and tinyadapt.Model.quantize."""
        x = np.asarray(x, dtype=np.float64)
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError("samples of shape %r, the model takes %r"
                             % (x.shape[1:], tuple(self.input_shape)))
        q = _round_half_away(x / self.input.scale) + self.input.zero_point
        return to_tam_layout(np.clip(q, I8_MIN, I8_MAX).astype(np.int8))

    def summary(self):
        """One line per layer: op, tensors, quantization."""
        lines = []
        for i, l in enumerate(self.model.layers):
            t = self.model.tensor(l.output)
            lines.append("%2d %-16s %-16s -> %-14s scale %.6g zp %d clamp [%d, %d]  %s"
                         % (i, l.op, self.model.tensor(l.input).shape, t.shape, t.scale,
                            t.zero_point, l.act_min, l.act_max, self.node_of.get(l.output, "")))
        return "\n".join(lines)


def convert_module(module, calib_data, input_shape=None, path=None, softmax=True,
                   calibration="minmax", labels=None, trainable="last", metadata=None):
    """Convert `module` (a torch.nn.Module) to a .tam model with int8 post-training
    quantization and write it to `path` (atomically; None: do not write).

    calib_data: float samples in PyTorch layout, (n, *input_shape), numpy or torch;
        every activation's range is observed over all of them (a few hundred
        representative samples are plenty).
    input_shape: one sample's shape, PyTorch layout, no batch: (C, H, W) for a CNN,
        (F,) (or any shape ahead of a Flatten) for an MLP; None: calib_data.shape[1:].
    softmax: True appends a SOFTMAX layer unless the module ends with Softmax;
        False leaves the module's ending as it is.
    calibration: "minmax" (TFLite's default) or a percentile such as 99.99.
    labels: class names, stored in the metadata.
    trainable: which tensors get the TRAINABLE flag: "last" (weights and bias of
        the last fully-connected or convolution layer, in a classifier its head),
        "all" (every weight and bias) or "none".
    metadata: extra JSON-able entries for the metadata.

    Returns a Conversion. Raises UnsupportedModuleError (a ConversionError,
    ValueError) naming the modules it cannot convert."""
    torch = _torch()
    if isinstance(calib_data, torch.Tensor):
        calib_data = calib_data.detach().cpu().numpy()
    calib = np.asarray(calib_data, dtype=np.float32)
    if input_shape is None:
        input_shape = calib.shape[1:]
    input_shape = tuple(int(d) for d in input_shape)
    if calib.ndim != len(input_shape) + 1 or tuple(calib.shape[1:]) != input_shape or not len(calib):
        raise ValueError("calib_data has shape %r; expected (n, %s) with n >= 1"
                         % (calib.shape, ", ".join(str(d) for d in input_shape)))
    if not np.all(np.isfinite(calib)):
        raise ValueError("calib_data holds NaN or infinity")
    if trainable not in ("last", "all", "none", None):
        raise ValueError("trainable must be 'last', 'all' or 'none', not %r" % (trainable,))

    graph = fold(module, input_shape)
    ops = list(graph._ops)
    values = graph.values
    ranges = _calibrate(graph, calib, calibration)

    # quantization of each value, in graph order
    vin = values[graph.input]
    vin.lo, vin.hi = ranges[graph.input]
    vin.scale, vin.zp = choose_qparams(vin.lo, vin.hi)
    for op in ops:
        v = values[op.output]
        v.lo, v.hi = ranges[op.output]
        if op.kind in ("maxpool", "avgpool", "gap", "flatten"):
            src = values[op.inputs[0]]       # TFLite: same scale and zero point as the input
            v.scale, v.zp = src.scale, src.zp
        elif op.kind == "softmax":
            v.scale, v.zp = SOFTMAX_SCALE, SOFTMAX_ZP
        else:
            v.scale, v.zp = choose_qparams(v.lo, v.hi)

    last = [op for op in ops if op.output == graph.output][0]
    added_softmax = bool(softmax) and last.kind != "softmax"
    logits = values[last.inputs[0]] if last.kind == "softmax" else values[graph.output]

    tensors, layers = [], []

    def tensor(dtype, shape=None, data=None, role=None, scale=0.0, zp=0, axis=None, scales=None):
        t = tam.Tensor(len(tensors), dtype, shape, data, role, False, scale, zp, axis, scales)
        tensors.append(t)
        return t.id

    def activation(v):
        if v.tid is None:
            v.tid = tensor("int8", v.tam_shape(), scale=v.scale, zp=v.zp)
        return v.tid

    tensor_of = {graph.input: activation(vin)}
    weighted_layers = []
    for op in ops:
        src = values[op.inputs[0]]
        out = values[op.output]
        act_min, act_max = _act_range(op.act, out.scale, out.zp)
        if op.kind in _WEIGHTED:
            w = op.p["w"]
            if op.kind == "linear":
                if src.perm is not None:
                    c, h, wd = src.perm
                    w = w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
                wq, ws = quantize_weights_per_channel(w, 0)
                axis = 0
            elif op.kind == "conv":
                wq, ws = quantize_weights_per_channel(w.transpose(0, 2, 3, 1), 0)      # OHWI
                axis = 0
            else:
                # (C_out, 1, KH, KW) -> (1, KH, KW, C_out), output channel ic * dm + m as torch
                wq, ws = quantize_weights_per_channel(w[:, 0].transpose(1, 2, 0)[None], 3)
                axis = 3
            sid = tensor("float32", ws.shape, ws, "scales")
            wid = tensor("int8", wq.shape, wq, "weights", axis=axis, scales=sid)
            bid = tensor("int32", (len(ws),), _quantize_bias(op.p["b"], src.scale, ws), "bias")
            mult, shift = _multipliers(src.scale, ws, out.scale, op.label)
            mid = tensor("int32", mult.shape, mult, "mult")
            shid = tensor("int32", shift.shape, shift, "shift")
            common = dict(input=activation(src), output=activation(out), weights=wid, bias=bid,
                          mult=mid, shift=shid, act_min=act_min, act_max=act_max)
            if op.kind == "linear":
                layers.append(tam.Layer("fully_connected", **common))
            else:
                layers.append(tam.Layer("conv2d" if op.kind == "conv" else "depthwise_conv2d",
                                        stride=op.p["stride"], filter=op.p["k"], padding=op.p["pad"],
                                        depth_multiplier=op.p["dm"] if op.kind == "dwconv" else 0,
                                        **common))
            weighted_layers.append((op.kind, wid, bid))
        elif op.kind in ("maxpool", "avgpool"):
            layers.append(tam.Layer("max_pool" if op.kind == "maxpool" else "avg_pool",
                                    input=activation(src), output=activation(out),
                                    stride=op.p["stride"], filter=op.p["k"], padding=op.p["pad"],
                                    act_min=act_min, act_max=act_max))
        elif op.kind == "gap":
            # TFLite's AVERAGE_POOL_2D over the whole image (docs/kernels.md), not MEAN
            _, c, h, w = src.shape
            layers.append(tam.Layer("avg_pool", input=activation(src), output=activation(out),
                                    stride=(1, 1), filter=(h, w), padding=(0, 0, 0, 0),
                                    act_min=act_min, act_max=act_max))
        elif op.kind == "flatten":
            layers.append(tam.Layer("reshape", input=activation(src), output=activation(out)))
        elif op.kind == "add":
            src2 = values[op.inputs[1]]
            params = _add_params(src.scale, src2.scale, out.scale, op.label)
            layers.append(tam.Layer("add", input=activation(src), input2=activation(src2),
                                    output=activation(out), act_min=act_min, act_max=act_max,
                                    params=params))
        elif op.kind == "softmax":
            layers.append(_softmax_layer(activation(src), activation(out), src.scale, op.label))
        tensor_of[op.nodes[-1]] = activation(out)
    out_tid = values[graph.output].tid
    out_scale, out_zp = values[graph.output].scale, values[graph.output].zp
    if added_softmax:
        if len(logits.shape) != 2 or logits.shape[1] > 511:
            raise ConversionError("cannot append a softmax to an output of shape %r (needs (N, C), "
                                  "C <= 511): pass softmax=False" % (logits.shape,))
        out_tid = tensor("int8", logits.tam_shape(), scale=SOFTMAX_SCALE, zp=SOFTMAX_ZP)
        layers.append(_softmax_layer(logits.tid, out_tid, logits.scale, "appended softmax"))
        out_scale, out_zp = SOFTMAX_SCALE, SOFTMAX_ZP

    if trainable == "all":
        marks = [(w, b) for _, w, b in weighted_layers]
    elif trainable == "last":
        marks = [(w, b) for _, w, b in weighted_layers[-1:]]
    else:
        marks = []
    for w, b in marks:
        tensors[w].trainable = tensors[b].trainable = True

    meta = {
        "converter": "tinyadapt_host.convert_torch",
        "source": type(module).__name__,
        "torch": torch.__version__,
        "input_shape": list(input_shape),
        "input_layout": "NHWC" if len(input_shape) == 3 else "as torch",
        "calibration": "%s over %d samples" % ("min/max" if calibration == "minmax"
                                               else "percentile %s" % calibration, len(calib)),
        "logits": logits.tid,
        "softmax": "appended" if added_softmax else ("module" if last.kind == "softmax" else "none"),
    }
    if labels is not None:
        meta["labels"] = [str(x) for x in labels]
    if metadata:
        meta.update(metadata)
    text = json.dumps(meta, separators=(",", ":"))
    if len(text.encode("utf-8")) > 4096:
        raise ConversionError("metadata is %d bytes (the .tam holds at most 4096): shorten labels "
                              "or metadata" % len(text.encode("utf-8")))
    model = tam.Model(tensors, layers, [tam.IOSpec(vin.tid, vin.scale, vin.zp)],
                      [tam.IOSpec(out_tid, out_scale, out_zp)], metadata=text)
    # to_bytes runs the board loader's checks before anything is written; reading the
    # image back gives the model exactly as a loader sees it (zero points filled in)
    model = tam.from_bytes(model.to_bytes())
    if path is not None:
        tam.save(model, os.fspath(path))
    ranges_by_node = dict((n, (values[n].lo, values[n].hi)) for n in values if values[n].lo is not None)
    return Conversion(model, path, graph, input_shape, tensor_of, ranges_by_node, logits.tid, meta)


def _softmax_layer(inp, out, in_scale, what):
    from _tinyadapt import softmax_params
    try:
        mult, shift, diff_min = softmax_params(in_scale, 1.0)
    except ValueError as e:
        raise ConversionError("%s: input scale %g: %s" % (what, in_scale, e)) from None
    return tam.Layer("softmax", input=inp, output=out, params=(mult, shift, diff_min))


# ----------------------------------------------------------------------------------
# the CLI hook


def _load_spec(src):
    """(module, calib_data, options) from a .py spec (build()) or a torch.save'd
    .pt/.pth file holding {"module", "calib_data"[, "options"]} or such a tuple."""
    torch = _torch()
    src = os.fspath(src)
    if src.endswith(".py"):
        import runpy
        ns = runpy.run_path(src, run_name="tinyadapt_build")
        if not callable(ns.get("build")):
            raise ConversionError("%s defines no build() function returning (module, calib_data)"
                                  % src)
        res = ns["build"]()
        what = "build()"
    else:
        try:
            res = torch.load(src, map_location="cpu", weights_only=False)
        except Exception as e:
            raise ConversionError("%s: torch.load failed: %s" % (src, e)) from None
        what = "the saved object"
        if isinstance(res, dict) and "module" in res:
            res = tuple([res["module"], res.get("calib_data")] +
                        ([res["options"]] if res.get("options") else []))
        elif isinstance(res, torch.nn.Module):
            raise ConversionError(
                "%s holds a module but no calibration data: torch.save({'module': m, "
                "'calib_data': x}) instead, or write a .py spec whose build() returns "
                "(module, calib_data)" % src)
        elif isinstance(res, dict):
            raise ConversionError(
                "%s holds a state_dict (weights without the architecture): write a .py spec "
                "whose build() constructs the module, loads it and returns (module, calib_data)"
                % src)
    if not isinstance(res, tuple) or len(res) not in (2, 3) or res[1] is None:
        raise ConversionError("%s: %s must be (module, calib_data) or (module, calib_data, "
                              "options), not %s" % (src, what, type(res).__name__))
    return res[0], res[1], dict(res[2]) if len(res) == 3 else {}


def convert_file(src, path, log=None, **overrides):
    """Convert what `src` describes and write `path`; returns the Conversion.

    `src` is a Python file defining `build()` that returns `(module, calib_data)`
    or `(module, calib_data, options)`, options being convert_module keyword
    arguments (input_shape, labels, softmax, calibration, trainable, metadata);
    or a .pt/.pth file saved with torch.save({"module": m, "calib_data": x,
    "options": {...}}) (or the same tuple). `overrides` win over options; `log`
    (a callable) gets one progress line per stage."""
    module, calib, opts = _load_spec(src)
    opts.update(overrides)
    input_shape = opts.pop("input_shape", None)
    if log:
        log("tracing %s, calibrating on %d samples" % (type(module).__name__, len(calib)))
    conv = convert_module(module, calib, input_shape, path, **opts)
    if log:
        for line in conv.summary().splitlines():
            log(line)
        log("wrote %s (%d bytes)" % (path, os.path.getsize(path)))
    return conv


def main(argv=None):
    """python -m tinyadapt_host.convert_torch BUILD.py OUT.tam [--no-softmax]
    [--percentile P] [--trainable last|all|none]"""
    import argparse
    ap = argparse.ArgumentParser(prog="python -m tinyadapt_host.convert_torch",
                                 description="Convert the PyTorch module that BUILD.py's build() "
                                             "returns to an int8 .tam model.")
    ap.add_argument("script", help="Python file defining build() -> (module, calib_data[, options]), "
                    "or a .pt/.pth saved with torch.save({'module': m, 'calib_data': x})")
    ap.add_argument("output", help="the .tam file to write")
    ap.add_argument("--no-softmax", action="store_true", help="do not append a SOFTMAX layer")
    ap.add_argument("--percentile", type=float, help="calibrate ranges to this percentile "
                    "(e.g. 99.99) instead of min/max")
    ap.add_argument("--trainable", choices=("last", "all", "none"), help="tensors flagged TRAINABLE "
                    "(default: the last fully-connected layer)")
    a = ap.parse_args(argv)
    kw = {}
    if a.no_softmax:
        kw["softmax"] = False
    if a.percentile is not None:
        kw["calibration"] = a.percentile
    if a.trainable:
        kw["trainable"] = a.trainable
    try:
        convert_file(a.script, a.output, log=print, **kw)
    except ConversionError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
