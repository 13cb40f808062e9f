"""The .tam model format on the host (docs/tam.md): a plain Python model
description with numpy arrays, written to bytes and read back.

    from tinyadapt_host import tam
    w = tam.Tensor(1, "int8", data=weights, role="weights", trainable=True)
    ...
    model = tam.Model(tensors=[...], layers=[tam.Layer("fully_connected", ...)],
                      inputs=[tam.IOSpec(0, 0.05, -3)], outputs=[tam.IOSpec(5, 0.1, 0)])
    tam.save(model, "model.tam")          # atomic: .tmp, fsync, rename
    again = tam.load("model.tam")

Validation is the board loader's own (`tinyadapt.tam.parse`, the code that runs on
MicroPython): `to_bytes` builds the image and parses it before returning, so the
host never writes a file the board would refuse; `from_bytes`/`load` parse with it
and copy the tensors into numpy arrays. Errors are `TamError` (a ValueError).
"""
import os
import struct

import numpy as np

from tinyadapt import tam as board
from tinyadapt.tam import (ADAPTER_FMT, ADAPTER_KINDS, AXIS_NONE, CRC_START, DTYPES,
                           HEADER_FMT, HEADER_SIZE, IO_FMT, LAYER_FMT, MAGIC, NONE, OPS,
                           ROLES, T_TRAINABLE, TENSOR_FMT, VERSION, TamError)

__all__ = ["Tensor", "Layer", "IOSpec", "Adapter", "Model", "TamError", "to_bytes",
           "from_bytes", "save", "load", "quantize_multiplier"]

_NP = {"int8": "<i1", "uint8": "<u1", "int16": "<i2", "int32": "<i4", "uint32": "<u4",
       "float32": "<f4"}
_DTYPE_CODE = dict((name, code) for code, (name, _) in DTYPES.items())
_ROLE_CODE = dict((name, i) for i, name in enumerate(ROLES))
_OP_CODE = dict((name, code) for code, name in OPS.items())
_KIND_CODE = dict((name, code) for code, name in ADAPTER_KINDS.items())


def _f32(x):
    """x rounded to float32, as the file stores it."""
    return struct.unpack("<f", struct.pack("<f", float(x)))[0]


def _code(table, value, what):
    if isinstance(value, str):
        if value not in table:
            raise TamError("unknown %s %r (known: %s)" % (what, value, ", ".join(sorted(table))))
        return table[value]
    return int(value)


class Tensor:
    """A tensor: `data` (numpy array, None for an activation), `dtype` name,
    `shape`, `role` (activation, weights, bias, mult, shift, scales, adapter, const,
    state), `trainable`, per-tensor `scale`/`zero_point`, per-channel float32
    `scales` (a tensor id) along `axis`."""

    def __init__(self, id, dtype="int8", shape=None, data=None, role=None, trainable=False,
                 scale=0.0, zero_point=0, axis=None, scales=None):
        if dtype not in _NP:
            raise TamError("tensor %r: unknown dtype %r" % (id, dtype))
        if data is not None:
            arr = np.asarray(data)
            want = np.dtype(_NP[dtype])
            if arr.dtype != want and want.kind in "iu" and arr.size:
                # refuse silent wrap-around (200 as int8) and float truncation (0.5)
                info = np.iinfo(want)
                if (arr.dtype.kind not in "iubf"
                        or (arr.dtype.kind == "f" and not np.all(arr == np.floor(arr)))
                        or arr.min() < info.min or arr.max() > info.max):
                    raise TamError("tensor %r: values do not fit %s" % (id, dtype))
            data = np.ascontiguousarray(arr, dtype=want)
            if shape is None:
                shape = data.shape
            elif tuple(shape) != data.shape:
                if int(np.prod(shape)) != data.size:
                    raise TamError("tensor %r: shape %r does not fit %d values"
                                   % (id, tuple(shape), data.size))
                data = data.reshape(tuple(shape))
        if shape is None:
            raise TamError("tensor %r: an activation needs a shape" % (id,))
        self.id = id
        self.dtype = dtype
        self.shape = tuple(int(d) for d in shape)
        self.data = data
        self.role = role if role is not None else ("activation" if data is None else "const")
        self.trainable = bool(trainable)
        self.scale = float(scale)
        self.zero_point = int(zero_point)
        self.axis = axis
        self.scales = scales

    def __repr__(self):
        return "Tensor(%r, %s, %r, %s)" % (self.id, self.dtype, self.shape, self.role)


class Layer:
    """A layer: `op` name (fully_connected, conv2d, ...), tensor ids per slot, the
    integer parameters of docs/tam.md. Zero points left as None are taken from the
    tensors when written."""

    def __init__(self, op, input=None, output=None, input2=None, weights=None, bias=None,
                 mult=None, shift=None, aux=None, stride=(1, 1), filter=(0, 0),
                 padding=(0, 0, 0, 0), dilation=(1, 1), depth_multiplier=0, act_min=-128,
                 act_max=127, in_zp=None, in2_zp=None, out_zp=None, params=()):
        self.op = OPS.get(op, op) if isinstance(op, int) else op
        self.input = input
        self.input2 = input2
        self.weights = weights
        self.bias = bias
        self.mult = mult
        self.shift = shift
        self.output = output
        self.aux = aux
        self.stride = tuple(stride)
        self.filter = tuple(filter)
        self.padding = tuple(padding)
        self.dilation = tuple(dilation)
        self.depth_multiplier = depth_multiplier
        self.act_min = act_min
        self.act_max = act_max
        self.in_zp = in_zp
        self.in2_zp = in2_zp
        self.out_zp = out_zp
        params = tuple(int(p) for p in params)
        if len(params) > 7:
            raise TamError("layer %s: %d params (at most 7)" % (self.op, len(params)))
        self.params = params + (0,) * (7 - len(params))

    def __repr__(self):
        return "Layer(%s)" % self.op


class IOSpec:
    """A model input or output: tensor id, float32 scale and zero point of the raw
    values: q = round(x / scale) + zero_point."""

    def __init__(self, tensor, scale, zero_point=0):
        self.tensor = tensor
        self.scale = float(scale)
        self.zero_point = int(zero_point)


class Adapter:
    """An adapter record: `kind` ("lora", "bias_delta"), the layer index it attaches
    to, its tensors (a, b, optimizer state), rank and alpha."""

    def __init__(self, layer, kind, a, b=None, rank=0, alpha=1.0, state=None):
        self.layer = layer
        self.kind = ADAPTER_KINDS.get(kind, kind) if isinstance(kind, int) else kind
        self.a = a
        self.b = b
        self.rank = rank
        self.alpha = float(alpha)
        self.state = state


class Model:
    def __init__(self, tensors=(), layers=(), inputs=(), outputs=(), adapters=(),
                 metadata="", flags=0):
        self.tensors = list(tensors)
        self.layers = list(layers)
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.adapters = list(adapters)
        self.metadata = metadata
        self.flags = flags

    def tensor(self, tid):
        for t in self.tensors:
            if t.id == tid:
                return t
        raise KeyError(tid)

    def to_bytes(self):
        return to_bytes(self)

    def save(self, path):
        save(self, path)


def _id(v):
    return NONE if v is None else v


def _align4(n):
    return (n + 3) & ~3


def to_bytes(model):
    """The .tam image of `model` (bytes). Raises TamError if the board loader
    would refuse it."""
    zps = dict((t.id, t.zero_point) for t in model.tensors)
    meta = model.metadata.encode("utf-8") if isinstance(model.metadata, str) else bytes(model.metadata)
    n_t, n_l, n_io, n_ad = (len(model.tensors), len(model.layers),
                            len(model.inputs) + len(model.outputs), len(model.adapters))
    off = HEADER_SIZE
    t_off = off if n_t else 0
    off += 48 * n_t
    l_off = off if n_l else 0
    off += 64 * n_l
    io_off = off if n_io else 0
    off += 12 * n_io
    ad_off = off if n_ad else 0
    off += 16 * n_ad
    meta_off = off if meta else 0
    off = _align4(off + len(meta))
    data_offs = {}
    for t in model.tensors:
        if t.data is not None:
            data_offs[t.id] = off
            off = _align4(off + t.data.nbytes)
    size = off
    out = bytearray(size)
    try:
        struct.pack_into(HEADER_FMT, out, 0, MAGIC, VERSION, HEADER_SIZE, 0, size, model.flags,
                         n_t, n_l, len(model.inputs), len(model.outputs), n_ad, 0, t_off, l_off,
                         io_off, ad_off, meta_off, len(meta), 0, 0)
        for i, t in enumerate(model.tensors):
            if len(t.shape) > 4:
                raise TamError("tensor %r: %d dimensions (limit 4)" % (t.id, len(t.shape)))
            dims = list(t.shape) + [0] * (4 - len(t.shape))
            has = t.data is not None
            struct.pack_into(TENSOR_FMT, out, t_off + 48 * i, t.id, _code(_DTYPE_CODE, t.dtype, "dtype"),
                             len(t.shape), dims[0], dims[1], dims[2], dims[3],
                             _code(_ROLE_CODE, t.role, "role"), T_TRAINABLE if t.trainable else 0,
                             AXIS_NONE if t.axis is None else t.axis, 0,
                             data_offs[t.id] if has else 0, t.data.nbytes if has else 0,
                             t.scale, t.zero_point, _id(t.scales), 0, 0)
            if has:
                o = data_offs[t.id]
                out[o:o + t.data.nbytes] = t.data.tobytes()
        for i, l in enumerate(model.layers):
            ins = [l.in_zp, l.in2_zp, l.out_zp]
            for k, (zp, tid) in enumerate(((l.in_zp, l.input), (l.in2_zp, l.input2),
                                           (l.out_zp, l.output))):
                if zp is None:
                    ins[k] = zps.get(tid, 0) if tid is not None else 0
            struct.pack_into(LAYER_FMT, out, l_off + 64 * i, _code(_OP_CODE, l.op, "op"), 0,
                             _id(l.input), _id(l.input2), _id(l.weights), _id(l.bias),
                             _id(l.mult), _id(l.shift), _id(l.output), _id(l.aux),
                             l.stride[0], l.stride[1], l.filter[0], l.filter[1], l.padding[0],
                             l.padding[1], l.padding[2], l.padding[3], l.dilation[0],
                             l.dilation[1], l.depth_multiplier, l.act_min, l.act_max,
                             ins[0], ins[1], ins[2], 0, *l.params)
        for i, io in enumerate(list(model.inputs) + list(model.outputs)):
            struct.pack_into(IO_FMT, out, io_off + 12 * i, io.tensor, 0, io.scale, io.zero_point)
        for i, a in enumerate(model.adapters):
            struct.pack_into(ADAPTER_FMT, out, ad_off + 16 * i, a.layer,
                             _code(_KIND_CODE, a.kind, "adapter kind"), a.rank, _id(a.a),
                             _id(a.b), a.alpha, _id(a.state), 0)
    except struct.error as e:
        raise TamError("a field does not fit its record: %s" % e) from None
    out[meta_off:meta_off + len(meta)] = meta
    struct.pack_into("<I", out, 8, board.crc_of(memoryview(out), CRC_START, size))
    board.parse(out)        # the board's checks: never write what a board refuses
    return bytes(out)


def _from_board(m):
    tensors = []
    for t in m.tensors.values():
        data = None
        if t.data is not None:
            data = np.frombuffer(bytes(t.data), dtype=_NP[t.dtype_name]).reshape(t.shape).copy()
        tensors.append(Tensor(t.id, t.dtype_name, t.shape, data, t.role_name, t.trainable,
                              t.scale, t.zero_point, t.axis, t.scales))
    layers = [Layer(l.op, input=l.input, output=l.output, input2=l.input2, weights=l.weights,
                    bias=l.bias, mult=l.mult, shift=l.shift, aux=l.aux, stride=l.stride,
                    filter=l.filter, padding=l.padding, dilation=l.dilation,
                    depth_multiplier=l.depth_multiplier, act_min=l.act_min, act_max=l.act_max,
                    in_zp=l.in_zp, in2_zp=l.in2_zp, out_zp=l.out_zp, params=l.params)
              for l in m.layers]
    io = [IOSpec(x.tensor, x.scale, x.zero_point) for x in m.inputs + m.outputs]
    adapters = [Adapter(a.layer, a.kind, a.a, a.b, a.rank, a.alpha, a.state) for a in m.adapters]
    return Model(tensors, layers, io[:len(m.inputs)], io[len(m.inputs):], adapters,
                 m.metadata, m.flags)


def from_bytes(data):
    """The Model in a .tam image (bytes-like); TamError if the board would refuse it."""
    return _from_board(board.parse(bytearray(data)))


def load(path):
    """Read a .tam file with the board loader (same checks, same recovery of an
    interrupted save) and return it as a host Model with numpy arrays."""
    return _from_board(board.load(path))


def save(model, path):
    """Write `model` to `path` atomically: `path + ".tmp"`, fsync, rename over
    `path`, fsync of the directory. A crash leaves the old file or the new one."""
    data = to_bytes(model)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    if hasattr(os, "O_DIRECTORY"):
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def quantize_multiplier(real):
    """TFLite's QuantizeMultiplier: (mult, shift) for the kernels' requant; the one
    definition is host_sim's `_tinyadapt.quantize_multiplier`."""
    from _tinyadapt import quantize_multiplier as qm
    return qm(real)
