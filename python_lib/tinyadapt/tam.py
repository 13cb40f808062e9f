"""`.tam` model files on the board (MicroPython) and on CPython: load, check, save.

The format is specified in docs/tam.md. `load(path)` reads the whole file into ONE
bytearray (readinto in chunks, CRC-32 checked chunk by chunk with
`_tinyadapt.crc32`), checks every structural rule of the spec and exposes each
tensor's data as a memoryview slice of that bytearray: weights, bias, mult and shift
go straight into the `_tinyadapt` kernels and training updates them in place.
`save(model, path)` writes that bytearray back atomically.

Any file that breaks the spec raises `TamError` (a ValueError) naming the problem,
before any kernel can see the data. The host writer (tinyadapt_host.tam) runs the
same checks through `parse`.
"""
import struct

import _tinyadapt

try:
    import os
except ImportError:  # pragma: no cover - MicroPython before 1.20
    import uos as os


class TamError(ValueError):
    """A file that is not a valid .tam model (truncated, corrupt, hostile)."""


MAGIC = b"TAM1"
VERSION = 1
HEADER_SIZE = 64
CRC_START = 12          # the CRC covers bytes [12, file_size): all after its field
NONE = 0xFFFF           # "no tensor" in id fields

# record layouts (little-endian, no padding)
HEADER_FMT = "<4sHHIIIHHHHHHIIIIIIII"       # 64 bytes
TENSOR_FMT = "<HBB4IBBBBIIfiHHI"            # 48 bytes
LAYER_FMT = "<BB8H11B5bH7i"                 # 64 bytes
IO_FMT = "<HHfi"                            # 12 bytes
ADAPTER_FMT = "<HBBHHfHH"                   # 16 bytes
TENSOR_REC = 48
LAYER_REC = 64
IO_REC = 12
ADAPTER_REC = 16

# limits (docs/tam.md, "Limits")
MAX_DIMS = 4
MAX_DIM = 65535
MAX_ELEMENTS = 1 << 24
MAX_TENSORS = 1024
MAX_LAYERS = 512
MAX_IO = 16
MAX_ADAPTERS = 256
MAX_META = 4096
CHUNK = 4096

# header flags
FLAG_ADAPTED = 1        # written by save() after on-device training
_KNOWN_FLAGS = FLAG_ADAPTED

# dtypes: code -> (name, item size)
INT8 = 1
UINT8 = 2
INT16 = 3
INT32 = 4
UINT32 = 5
FLOAT32 = 6
DTYPES = {INT8: ("int8", 1), UINT8: ("uint8", 1), INT16: ("int16", 2),
          INT32: ("int32", 4), UINT32: ("uint32", 4), FLOAT32: ("float32", 4)}
_ZP_RANGE = {INT8: (-128, 127), UINT8: (0, 255), INT16: (-32768, 32767)}

# tensor roles
ACTIVATION = 0
WEIGHTS = 1
BIAS = 2
MULT = 3
SHIFT = 4
SCALES = 5
ADAPTER = 6
CONST = 7
STATE = 8
ROLES = ("activation", "weights", "bias", "mult", "shift", "scales", "adapter", "const",
         "state")
_ROLE_DTYPE = {WEIGHTS: INT8, BIAS: INT32, MULT: INT32, SHIFT: INT32, SCALES: FLOAT32}

# tensor flags
T_TRAINABLE = 1
AXIS_NONE = 0xFF

# op codes; 0 and 11..255 are reserved (refused by this version)
FULLY_CONNECTED = 1
CONV2D = 2
DEPTHWISE_CONV2D = 3
AVG_POOL = 4
MAX_POOL = 5
GLOBAL_AVG_POOL = 6
ADD = 7
SOFTMAX = 8
RESHAPE = 9
ARGMAX = 10
OPS = {FULLY_CONNECTED: "fully_connected", CONV2D: "conv2d",
       DEPTHWISE_CONV2D: "depthwise_conv2d", AVG_POOL: "avg_pool", MAX_POOL: "max_pool",
       GLOBAL_AVG_POOL: "global_avg_pool", ADD: "add", SOFTMAX: "softmax",
       RESHAPE: "reshape", ARGMAX: "argmax"}

# adapter kinds; 0 and 3..255 reserved
LORA = 1
BIAS_DELTA = 2
ADAPTER_KINDS = {LORA: "lora", BIAS_DELTA: "bias_delta"}

# layer tensor slots, in record order
SLOTS = ("input", "input2", "weights", "bias", "mult", "shift", "output", "aux")

_F32_MAX = 3.5e38       # above float32's largest finite value: catches inf; nan fails <

# names of the file regions, for overlap messages
_REGIONS = ("header", "tensor table", "layer table", "io table", "adapter table",
            "metadata")


def _finite(x):
    return -_F32_MAX < x < _F32_MAX


class Tensor:
    """One tensor record. `data` is a memoryview slice of the model buffer (None
    for activations); `shape` a tuple; `scale`/`zero_point` per-tensor
    quantization; `axis`/`scales` per-channel scales (ids; None when absent)."""

    def __init__(self, tid, dtype, shape, role, trainable, scale, zero_point, axis,
                 scales, offset, nbytes, data):
        self.id = tid
        self.dtype = dtype
        self.shape = shape
        self.role = role
        self.trainable = trainable
        self.scale = scale
        self.zero_point = zero_point
        self.axis = axis
        self.scales = scales
        self.offset = offset
        self.nbytes = nbytes
        self.data = data

    @property
    def dtype_name(self):
        return DTYPES[self.dtype][0]

    @property
    def role_name(self):
        return ROLES[self.role]

    def numel(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    def __repr__(self):
        return "Tensor(%d, %s, %r, %s)" % (self.id, self.dtype_name, self.shape, self.role_name)


class Layer:
    """One layer record: `op` (code) and `name`, tensor ids per slot (None when
    absent), geometry as tuples, clamps and zero points, `params` (7 ints)."""

    def __init__(self, index, rec):
        self.index = index
        self.op = rec[0]
        self.name = OPS.get(rec[0], "op %d" % rec[0])
        ids = [None if t == NONE else t for t in rec[2:10]]
        (self.input, self.input2, self.weights, self.bias, self.mult, self.shift,
         self.output, self.aux) = ids
        g = rec[10:21]
        self.stride = (g[0], g[1])
        self.filter = (g[2], g[3])
        self.padding = (g[4], g[5], g[6], g[7])     # top, bottom, left, right
        self.dilation = (g[8], g[9])
        self.depth_multiplier = g[10]
        (self.act_min, self.act_max, self.in_zp, self.in2_zp, self.out_zp) = rec[21:26]
        self.params = tuple(rec[27:34])

    def __repr__(self):
        return "Layer(%d, %s)" % (self.index, self.name)


class IO:
    """A model input or output: tensor id, and the float32 scale and zero point that
    map raw (sensor) values to the tensor's integers: q = round(x / scale) + zp."""

    def __init__(self, tensor, scale, zero_point, lo, hi):
        self.tensor = tensor
        self.scale = scale
        self.zero_point = zero_point
        self.lo = lo
        self.hi = hi

    def quantize(self, x):
        # round half away from zero, as TFLite and Model.quantize (not Python's
        # round, which rounds halves to even)
        r = x / self.scale
        q = (int(r + 0.5) if r >= 0 else -int(-r + 0.5)) + self.zero_point
        return self.lo if q < self.lo else self.hi if q > self.hi else q

    def dequantize(self, q):
        return (q - self.zero_point) * self.scale


class Adapter:
    """An adapter record (LoRA, bias delta): the layer it attaches to, its tensors."""

    def __init__(self, layer, kind, rank, a, b, alpha, state):
        self.layer = layer
        self.kind = kind
        self.name = ADAPTER_KINDS.get(kind, "kind %d" % kind)
        self.rank = rank
        self.a = a
        self.b = b
        self.alpha = alpha
        self.state = state


class Model:
    """A loaded .tam file. `buf` is the one bytearray holding the whole file;
    tensors' `data` are slices of it. `tensors` maps id -> Tensor."""

    def __init__(self, buf, flags, tensors, layers, inputs, outputs, adapters, metadata):
        self.buf = buf
        self.version = VERSION
        self.flags = flags
        self.tensors = tensors
        self.layers = layers
        self.inputs = inputs
        self.outputs = outputs
        self.adapters = adapters
        self.metadata = metadata

    def tensor(self, tid):
        return self.tensors[tid]

    def trainable(self):
        return [t for t in self.tensors.values() if t.trainable]

    def save(self, path):
        save(self, path)


# ---------------------------------------------------------------------------
# checks


def check_header(hdr, size):
    """Checks on the fixed header alone (before the rest is read): size, magic,
    version, header size, file size. Returns the unpacked header tuple."""
    if size < HEADER_SIZE:
        raise TamError("file truncated: %d bytes, the header alone is %d" % (size, HEADER_SIZE))
    h = struct.unpack_from(HEADER_FMT, hdr, 0)
    if h[0] != MAGIC:
        raise TamError("not a .tam file: magic %r, expected %r" % (bytes(h[0]), MAGIC))
    if h[1] != VERSION:
        raise TamError("unsupported format version %d (this loader reads version %d)"
                       % (h[1], VERSION))
    if h[2] != HEADER_SIZE:
        raise TamError("header size %d, version %d has %d" % (h[2], VERSION, HEADER_SIZE))
    if h[4] > size:
        raise TamError("file truncated: %d bytes, header says %d" % (size, h[4]))
    if h[4] < size:
        raise TamError("%d bytes of trailing data: header says %d bytes, file has %d"
                       % (size - h[4], h[4], size))
    return h


def crc_of(mv, start, end, crc=0):
    """CRC-32 (zlib) of mv[start:end], in CHUNK-byte pieces."""
    while start < end:
        n = end - start
        if n > CHUNK:
            n = CHUNK
        crc = _tinyadapt.crc32(mv[start:start + n], crc)
        start += n
    return crc


def _check_crc(stored, computed):
    if stored != computed:
        raise TamError("CRC mismatch: stored 0x%08x, computed 0x%08x (file corrupt)"
                       % (stored, computed))


def _table(name, off, count, rec, size, limit, intervals, region):
    if count > limit:
        raise TamError("too many %s: %d (limit %d)" % (name, count, limit))
    if count == 0:
        if off != 0:
            raise TamError("%s: count 0 but offset %d (must be 0)" % (_REGIONS[region], off))
        return
    if off % 4:
        raise TamError("%s offset %d is not a multiple of 4" % (_REGIONS[region], off))
    if off + count * rec > size:
        raise TamError("%s: %d records of %d bytes at offset %d extend past the end of "
                       "the file (%d bytes)" % (_REGIONS[region], count, rec, off, size))
    intervals.append((off, off + count * rec, -1 - region))


def _label(kind):
    if kind < 0:
        return _REGIONS[-1 - kind]
    return "tensor %d data" % kind


def _tensor(buf, mv, idx, off, size, intervals):
    r = struct.unpack_from(TENSOR_FMT, buf, off)
    tid, dtype, ndim = r[0], r[1], r[2]
    dims = r[3:7]
    role, flags, axis, res8, doff, dsize, scale, zp, scales_id, res16, res32 = r[7:18]
    if tid == NONE:
        raise TamError("tensor record %d: id 0x%04x is reserved for 'none'" % (idx, NONE))
    what = "tensor %d" % tid
    if dtype not in DTYPES:
        raise TamError("%s: unknown dtype %d" % (what, dtype))
    if ndim > MAX_DIMS:
        raise TamError("%s: %d dimensions (limit %d)" % (what, ndim, MAX_DIMS))
    n = 1
    for i in range(MAX_DIMS):
        d = dims[i]
        if i < ndim:
            if d < 1 or d > MAX_DIM:
                raise TamError("%s: dimension %d is %d (must be 1..%d)" % (what, i, d, MAX_DIM))
            n *= d
            if n > MAX_ELEMENTS:
                raise TamError("%s: shape %r has more than %d elements"
                               % (what, tuple(dims[:ndim]), MAX_ELEMENTS))
        elif d:
            raise TamError("%s: unused dimension %d is %d (must be 0)" % (what, i, d))
    if role >= len(ROLES):
        raise TamError("%s: unknown role %d" % (what, role))
    if flags & ~T_TRAINABLE:
        raise TamError("%s: unknown flags 0x%02x" % (what, flags))
    if res8 or res16 or res32:
        raise TamError("%s: reserved field is not zero" % what)
    want = _ROLE_DTYPE.get(role)
    if want is not None and dtype != want:
        raise TamError("%s: role %s needs dtype %s, not %s"
                       % (what, ROLES[role], DTYPES[want][0], DTYPES[dtype][0]))
    item = DTYPES[dtype][1]
    if role == ACTIVATION:
        if doff or dsize:
            raise TamError("%s: activation with data (offset %d, size %d)" % (what, doff, dsize))
        if flags & T_TRAINABLE:
            raise TamError("%s: activation marked trainable" % what)
        data = None
    else:
        if dsize != n * item:
            raise TamError("%s: data size %d bytes, shape %r of %s needs %d"
                           % (what, dsize, tuple(dims[:ndim]), DTYPES[dtype][0], n * item))
        if doff > size or dsize > size - doff:
            raise TamError("%s: data [%d, %d) lies outside the file (%d bytes)"
                           % (what, doff, doff + dsize, size))
        align = 4 if item == 4 else item
        if doff % align:
            raise TamError("%s: %s data at offset %d is not aligned to %d"
                           % (what, DTYPES[dtype][0], doff, align))
        intervals.append((doff, doff + dsize, tid))
        data = mv[doff:doff + dsize]
    if not _finite(scale) or scale < 0:
        raise TamError("%s: scale must be finite and >= 0" % what)
    lo, hi = _ZP_RANGE.get(dtype, (0, 0))
    if zp < lo or zp > hi:
        raise TamError("%s: zero point %d out of range for %s" % (what, zp, DTYPES[dtype][0]))
    if (axis == AXIS_NONE) != (scales_id == NONE):
        raise TamError("%s: quantization axis and per-channel scales must be given together"
                       % what)
    if axis != AXIS_NONE and axis >= ndim:
        raise TamError("%s: quantization axis %d, tensor has %d dimensions" % (what, axis, ndim))
    return Tensor(tid, dtype, tuple(dims[:ndim]), role, bool(flags & T_TRAINABLE), scale, zp,
                  None if axis == AXIS_NONE else axis,
                  None if scales_id == NONE else scales_id, doff, dsize, data)


def _check_elements(t):
    """mult elements in [0, 2^31-1], shift elements in [-31, 30] (the kernels' rules)."""
    mv = t.data
    for k in range(0, t.nbytes, 4):
        v = struct.unpack_from("<i", mv, k)[0]
        if t.role == MULT and v < 0:
            raise TamError("tensor %d (mult): element %d is %d (must be >= 0)" % (t.id, k // 4, v))
        if t.role == SHIFT and (v < -31 or v > 30):
            raise TamError("tensor %d (shift): element %d is %d (must be -31..30)"
                           % (t.id, k // 4, v))


def _mult_ok(what, v):
    if v < 0:
        raise TamError("%s: multiplier %d (must be >= 0)" % (what, v))


def _shift_ok(what, v, lo=-31, hi=30):
    if v < lo or v > hi:
        raise TamError("%s: shift %d (must be %d..%d)" % (what, v, lo, hi))


def _conv_out(what, axis, n_in, pad_a, pad_b, k, stride, dil, n_out):
    span = dil * (k - 1) + 1
    total = n_in + pad_a + pad_b
    if total < span:
        raise TamError("%s: filter %d (dilation %d) larger than padded input %d on %s"
                       % (what, k, dil, total, axis))
    want = (total - span) // stride + 1
    if n_out != want:
        raise TamError("%s: output %s %d, input, filter, stride and padding give %d"
                       % (what, axis, n_out, want))


class _LayerCheck:
    """The per-op rules of docs/tam.md "Layer table"."""

    def __init__(self, tensors, layer):
        self.tensors = tensors
        self.l = layer
        self.what = "layer %d (%s)" % (layer.index, layer.name)

    def get(self, slot, required, role=None):
        tid = getattr(self.l, slot)
        if tid is None:
            if required:
                raise TamError("%s: %s tensor missing" % (self.what, slot))
            return None
        if not required:
            raise TamError("%s: %s must be none, not tensor %d" % (self.what, slot, tid))
        t = self.tensors.get(tid)
        if t is None:
            raise TamError("%s: %s refers to missing tensor %d" % (self.what, slot, tid))
        if role is not None and t.role != role:
            raise TamError("%s: %s tensor %d has role %s, needs %s"
                           % (self.what, slot, tid, ROLES[t.role], ROLES[role]))
        return t

    def dtype(self, slot, t, allowed):
        if t.dtype not in allowed:
            raise TamError("%s: %s tensor %d has dtype %s" % (self.what, slot, t.id, t.dtype_name))

    def ndim(self, slot, t, n):
        if len(t.shape) != n:
            raise TamError("%s: %s tensor %d has shape %r, needs %d dimensions"
                           % (self.what, slot, t.id, t.shape, n))

    def vec(self, slot, t, n):
        if t.shape != (n,):
            raise TamError("%s: %s tensor %d has shape %r, needs (%d,)"
                           % (self.what, slot, t.id, t.shape, n))

    def same_shape(self, a, b):
        if a.shape != b.shape:
            raise TamError("%s: tensor %d has shape %r, tensor %d has %r"
                           % (self.what, a.id, a.shape, b.id, b.shape))


def _check_layer(tensors, l):
    c = _LayerCheck(tensors, l)
    what = c.what
    op = l.op
    weighted = op in (FULLY_CONNECTED, CONV2D, DEPTHWISE_CONV2D)
    inp = c.get("input", True)
    inp2 = c.get("input2", op == ADD)
    w = c.get("weights", weighted, WEIGHTS)
    b = c.get("bias", weighted, BIAS)
    m = c.get("mult", weighted, MULT)
    s = c.get("shift", weighted, SHIFT)
    out = c.get("output", True, ACTIVATION)
    c.get("aux", False)
    c.dtype("input", inp, (INT8,))
    if inp2 is not None:
        c.dtype("input2", inp2, (INT8,))
    c.dtype("output", out, (INT32, UINT8) if op == ARGMAX else (INT8,))
    if l.act_min > l.act_max:
        raise TamError("%s: act_min %d > act_max %d" % (what, l.act_min, l.act_max))
    for name, zp, t in (("in_zp", l.in_zp, inp), ("in2_zp", l.in2_zp, inp2),
                        ("out_zp", l.out_zp, out)):
        tz = 0 if t is None else t.zero_point
        if zp != tz:
            raise TamError("%s: %s %d differs from the tensor's zero point %d" % (what, name, zp, tz))
    p = l.params
    sh, sw = l.stride
    dh, dw = l.dilation
    if op == FULLY_CONNECTED:
        c.ndim("weights", w, 2)
        n_out, n_in = w.shape
        for slot, t in (("bias", b), ("mult", m), ("shift", s)):
            c.vec(slot, t, n_out)
        if inp.numel() % n_in:
            raise TamError("%s: input tensor %d has %d elements, not a multiple of n_in %d"
                           % (what, inp.id, inp.numel(), n_in))
        if out.numel() != inp.numel() // n_in * n_out:
            raise TamError("%s: output tensor %d has %d elements, expected %d"
                           % (what, out.id, out.numel(), inp.numel() // n_in * n_out))
    elif op in (CONV2D, DEPTHWISE_CONV2D, AVG_POOL, MAX_POOL):
        c.ndim("input", inp, 4)
        c.ndim("output", out, 4)
        if sh < 1 or sw < 1:
            raise TamError("%s: stride %dx%d (must be >= 1)" % (what, sh, sw))
        n, ih, iw, ic = inp.shape
        on, oh, ow, oc = out.shape
        if on != n:
            raise TamError("%s: batch %d in, %d out" % (what, n, on))
        if weighted:
            if dh < 1 or dw < 1:
                raise TamError("%s: dilation %dx%d (must be >= 1)" % (what, dh, dw))
            c.ndim("weights", w, 4)
            kc, kh, kw, wc = w.shape
            if op == CONV2D:
                if wc != ic or kc != oc:
                    raise TamError("%s: weights %r do not map %d to %d channels"
                                   % (what, w.shape, ic, oc))
            else:
                dm = l.depth_multiplier
                if dm < 1:
                    raise TamError("%s: depth_multiplier %d (must be >= 1)" % (what, dm))
                if kc != 1 or wc != oc or oc != ic * dm:
                    raise TamError("%s: weights %r, %d input channels x depth_multiplier %d "
                                   "!= %d output channels" % (what, w.shape, ic, dm, oc))
            for slot, t in (("bias", b), ("mult", m), ("shift", s)):
                c.vec(slot, t, oc)
            if l.filter != (kh, kw):
                raise TamError("%s: filter %dx%d, weights are %dx%d"
                               % (what, l.filter[0], l.filter[1], kh, kw))
        else:
            kh, kw = l.filter
            dh = dw = 1
            if kh < 1 or kw < 1:
                raise TamError("%s: filter %dx%d (must be >= 1)" % (what, kh, kw))
            if oc != ic:
                raise TamError("%s: %d channels in, %d out" % (what, ic, oc))
        pt, pb, pl, pr = l.padding
        _conv_out(what, "height", ih, pt, pb, kh, sh, dh, oh)
        _conv_out(what, "width", iw, pl, pr, kw, sw, dw, ow)
    elif op == GLOBAL_AVG_POOL:
        c.ndim("input", inp, 4)
        n, ih, iw, ic = inp.shape
        if out.shape != (n, ic) and out.shape != (n, 1, 1, ic):
            raise TamError("%s: output shape %r, needs (%d, %d) or (%d, 1, 1, %d)"
                           % (what, out.shape, n, ic, n, ic))
        _mult_ok(what, p[0])
        _shift_ok(what, p[1])
    elif op == ADD:
        c.same_shape(inp, inp2)
        c.same_shape(inp, out)
        _shift_ok(what, p[0], 0, 30)
        for k in (1, 3, 5):
            _mult_ok(what, p[k])
            _shift_ok(what, p[k + 1])
    elif op == SOFTMAX:
        c.same_shape(inp, out)
        _mult_ok(what, p[0])
        _shift_ok(what, p[1], 0, 31)
        if p[2] > 0:
            raise TamError("%s: diff_min %d (must be <= 0)" % (what, p[2]))
    elif op == RESHAPE:
        if inp.numel() != out.numel():
            raise TamError("%s: %d elements in, %d out" % (what, inp.numel(), out.numel()))
    elif op == ARGMAX:
        axis = p[0]
        if axis < 0 or axis >= len(inp.shape):
            raise TamError("%s: axis %d, input has %d dimensions" % (what, axis, len(inp.shape)))
        if out.numel() * inp.shape[axis] != inp.numel():
            raise TamError("%s: output tensor %d has %d elements, expected %d"
                           % (what, out.id, out.numel(), inp.numel() // inp.shape[axis]))
        if out.dtype == UINT8 and inp.shape[axis] > 256:
            raise TamError("%s: %d classes do not fit a uint8 output" % (what, inp.shape[axis]))


def _io(buf, off, tensors, which, idx):
    tid, res, scale, zp = struct.unpack_from(IO_FMT, buf, off)
    what = "%s %d" % (which, idx)
    t = tensors.get(tid)
    if t is None:
        raise TamError("%s refers to missing tensor %d" % (what, tid))
    if t.role != ACTIVATION:
        raise TamError("%s: tensor %d is not an activation" % (what, tid))
    if t.dtype not in (INT8, UINT8, INT16, INT32):
        raise TamError("%s: tensor %d has dtype %s (int8, uint8, int16 or int32)"
                       % (what, tid, t.dtype_name))
    if res:
        raise TamError("%s: reserved field is not zero" % what)
    if not _finite(scale) or scale <= 0:
        raise TamError("%s: scale must be finite and > 0" % what)
    lo, hi = _ZP_RANGE.get(t.dtype, (0, 0))
    if zp < lo or zp > hi:
        raise TamError("%s: zero point %d out of range for %s" % (what, zp, t.dtype_name))
    if t.dtype == INT32:
        lo, hi = -(1 << 31), (1 << 31) - 1
    elif t.dtype == UINT32:
        lo, hi = 0, (1 << 32) - 1
    return IO(tid, scale, zp, lo, hi)


def _adapter(buf, off, idx, tensors, layers):
    lidx, kind, rank, a, b, alpha, state, res = struct.unpack_from(ADAPTER_FMT, buf, off)
    what = "adapter %d" % idx
    if kind not in ADAPTER_KINDS:
        raise TamError("%s: unknown kind %d" % (what, kind))
    if lidx >= len(layers):
        raise TamError("%s: refers to missing layer %d" % (what, lidx))
    if res:
        raise TamError("%s: reserved field is not zero" % what)
    if not _finite(alpha):
        raise TamError("%s: alpha must be finite" % what)
    l = layers[lidx]
    ts = {}
    for name, tid, role in (("a", a, ADAPTER), ("b", b, ADAPTER), ("state", state, STATE)):
        if tid == NONE:
            ts[name] = None
            continue
        t = tensors.get(tid)
        if t is None:
            raise TamError("%s: %s refers to missing tensor %d" % (what, name, tid))
        if t.role != role:
            raise TamError("%s: %s tensor %d has role %s, needs %s"
                           % (what, name, tid, ROLES[t.role], ROLES[role]))
        ts[name] = t
    ta, tb = ts["a"], ts["b"]
    if ta is None:
        raise TamError("%s: tensor a missing" % what)
    w = tensors[l.weights] if l.weights is not None else None
    if kind == LORA:
        if l.op == FULLY_CONNECTED:
            n_out, fan_in = w.shape
        elif l.op == CONV2D:
            n_out, fan_in = w.shape[0], w.shape[1] * w.shape[2] * w.shape[3]
        else:
            raise TamError("%s: lora needs a fully_connected or conv2d layer, layer %d is %s"
                           % (what, lidx, l.name))
        if rank < 1:
            raise TamError("%s: lora rank %d (must be >= 1)" % (what, rank))
        if tb is None:
            raise TamError("%s: tensor b missing" % what)
        if ta.shape != (rank, fan_in) or tb.shape != (n_out, rank):
            raise TamError("%s: lora shapes a %r, b %r; rank %d on layer %d needs a (%d, %d), "
                           "b (%d, %d)" % (what, ta.shape, tb.shape, rank, lidx, rank, fan_in,
                                           n_out, rank))
    else:
        if w is None:
            raise TamError("%s: bias_delta needs a layer with a bias, layer %d is %s"
                           % (what, lidx, l.name))
        if rank or tb is not None:
            raise TamError("%s: bias_delta has rank 0 and no tensor b" % what)
        if ta.dtype != INT32 or ta.shape != (tensors[l.bias].shape[0],):
            raise TamError("%s: bias_delta tensor %d must be int32 of shape (%d,)"
                           % (what, ta.id, tensors[l.bias].shape[0]))
    return Adapter(lidx, kind, rank, a, None if b == NONE else b, alpha,
                   None if state == NONE else state)


def parse(buf, crc_checked=False):
    """Check a whole .tam image held in `buf` (a bytearray, kept by the model)
    and return its Model. `crc_checked`: the caller has already verified the CRC
    (load() does so while reading)."""
    size = len(buf)
    h = check_header(buf, size)
    mv = memoryview(buf)
    if not crc_checked:
        _check_crc(h[3], crc_of(mv, CRC_START, size))
    (flags, n_t, n_l, n_in, n_out, n_ad, res16, t_off, l_off, io_off, ad_off, meta_off,
     meta_len, res_a, res_b) = h[5:20]
    if flags & ~_KNOWN_FLAGS:
        raise TamError("unknown header flags 0x%x" % (flags & ~_KNOWN_FLAGS))
    if res16 or res_a or res_b:
        raise TamError("reserved header field is not zero")
    intervals = [(0, HEADER_SIZE, -1)]
    _table("tensors", t_off, n_t, TENSOR_REC, size, MAX_TENSORS, intervals, 1)
    _table("layers", l_off, n_l, LAYER_REC, size, MAX_LAYERS, intervals, 2)
    if n_in > MAX_IO or n_out > MAX_IO:
        raise TamError("too many model inputs/outputs: %d/%d (limit %d each)"
                       % (n_in, n_out, MAX_IO))
    _table("inputs and outputs", io_off, n_in + n_out, IO_REC, size, 2 * MAX_IO, intervals, 3)
    _table("adapters", ad_off, n_ad, ADAPTER_REC, size, MAX_ADAPTERS, intervals, 4)
    if meta_len > MAX_META:
        raise TamError("metadata of %d bytes (limit %d)" % (meta_len, MAX_META))
    if meta_len == 0:
        if meta_off:
            raise TamError("metadata: length 0 but offset %d (must be 0)" % meta_off)
    else:
        if meta_off > size or meta_len > size - meta_off:
            raise TamError("metadata [%d, %d) lies outside the file (%d bytes)"
                           % (meta_off, meta_off + meta_len, size))
        intervals.append((meta_off, meta_off + meta_len, -6))

    tensors = {}
    for i in range(n_t):
        t = _tensor(buf, mv, i, t_off + i * TENSOR_REC, size, intervals)
        if t.id in tensors:
            raise TamError("tensor record %d: duplicate id %d" % (i, t.id))
        tensors[t.id] = t

    intervals.sort()
    for i in range(1, len(intervals)):
        a, b = intervals[i - 1], intervals[i]
        if b[0] < a[1]:
            raise TamError("%s [%d, %d) overlaps %s [%d, %d)"
                           % (_label(b[2]), b[0], b[1], _label(a[2]), a[0], a[1]))
    intervals = None

    for t in tensors.values():
        if t.scales is not None:
            s = tensors.get(t.scales)
            if s is None:
                raise TamError("tensor %d: per-channel scales refer to missing tensor %d"
                               % (t.id, t.scales))
            if s.role != SCALES or s.shape != (t.shape[t.axis],):
                raise TamError("tensor %d: per-channel scales tensor %d must be float32 scales "
                               "of shape (%d,)" % (t.id, s.id, t.shape[t.axis]))
        if t.role == MULT or t.role == SHIFT:
            _check_elements(t)

    ios = []
    for i in range(n_in + n_out):
        which, idx = ("input", i) if i < n_in else ("output", i - n_in)
        ios.append(_io(buf, io_off + i * IO_REC, tensors, which, idx))
    inputs, outputs = ios[:n_in], ios[n_in:]
    available = {}
    for io in inputs:
        available[io.tensor] = 1
    for t in tensors.values():
        if t.data is not None:
            available[t.id] = 1

    layers = []
    for i in range(n_l):
        rec = struct.unpack_from(LAYER_FMT, buf, l_off + i * LAYER_REC)
        if rec[0] not in OPS:
            raise TamError("layer %d: unknown op code %d" % (i, rec[0]))
        l = Layer(i, rec)
        if rec[1] or rec[26]:
            raise TamError("layer %d (%s): reserved field is not zero" % (i, l.name))
        # graph rule first (ids that exist), then the op's own rules
        for slot, tid in (("input", l.input), ("input2", l.input2)):
            if tid is not None and tid in tensors and tid not in available:
                raise TamError("layer %d (%s): %s tensor %d is neither a model input, a "
                               "constant nor an earlier layer's output" % (i, l.name, slot, tid))
        if l.output in available:
            raise TamError("layer %d (%s): output tensor %d is already written (model input, "
                           "constant or earlier layer)" % (i, l.name, l.output))
        _check_layer(tensors, l)
        available[l.output] = 1
        layers.append(l)
    for i, io in enumerate(outputs):
        if io.tensor not in available:
            raise TamError("output %d: tensor %d is never computed" % (i, io.tensor))
    available = None

    adapters = [_adapter(buf, ad_off + i * ADAPTER_REC, i, tensors, layers) for i in range(n_ad)]

    if meta_len:
        try:
            metadata = str(bytes(mv[meta_off:meta_off + meta_len]), "utf-8")
        except UnicodeError:
            raise TamError("metadata is not valid UTF-8")
    else:
        metadata = ""
    return Model(buf, flags, tensors, layers, inputs, outputs, adapters, metadata)


def _read(path):
    f = open(path, "rb")
    try:
        f.seek(0, 2)
        size = f.tell()
        f.seek(0)
        hdr = f.read(HEADER_SIZE)
        h = check_header(hdr, len(hdr) if len(hdr) < HEADER_SIZE else size)
        hdr = None
        buf = bytearray(size)
        mv = memoryview(buf)
        f.seek(0)
        pos = 0
        crc = 0
        while pos < size:
            n = size - pos
            if n > CHUNK:
                n = CHUNK
            got = f.readinto(mv[pos:pos + n])
            if not got:
                raise TamError("file truncated while reading: %d of %d bytes" % (pos, size))
            a = pos if pos >= CRC_START else CRC_START
            pos += got
            if pos > a:
                crc = _tinyadapt.crc32(mv[a:pos], crc)
    finally:
        f.close()
    _check_crc(h[3], crc)
    return parse(buf, crc_checked=True)


def _load(path):
    try:
        return _read(path)
    except TamError as e:
        raise TamError("%s: %s" % (path, e.args[0]))


def load(path):
    """Read, check and return the Model in `path` (TamError if the file is not a
    valid .tam). If `path` is missing but `path + ".tmp"` holds a valid model (a
    save interrupted between removing the old file and renaming on a filesystem
    without an atomic replace), that one is loaded and renamed to `path`."""
    try:
        os.stat(path)
    except OSError as e:
        tmp = path + ".tmp"
        try:
            os.stat(tmp)
        except OSError:
            raise e
        m = _load(tmp)
        os.rename(tmp, path)
        return m
    return _load(path)


def _replace(tmp, path):
    rep = getattr(os, "replace", None)
    if rep is not None:            # CPython: atomic replace everywhere
        rep(tmp, path)
        return
    try:                           # MicroPython: VfsPosix, littlefs, FAT replace
        os.rename(tmp, path)
    except OSError as e:
        # a filesystem that refuses to rename over an existing file: remove that
        # first. Until the rename, `path` is missing and load() takes the complete
        # `path + ".tmp"`, so a valid model exists at every moment.
        try:
            os.stat(path)
        except OSError:
            raise e                # not "destination exists": a real failure
        os.remove(path)
        os.rename(tmp, path)


def save(model, path):
    """Write the model (its buffer, with the adapted tensors in place) to `path`
    atomically: `path + ".tmp"` is written, flushed and closed, then renamed over
    `path`. Sets FLAG_ADAPTED and a new CRC in the buffer first."""
    buf = model.buf
    mv = memoryview(buf)
    size = len(buf)
    model.flags |= FLAG_ADAPTED
    struct.pack_into("<I", buf, 16, model.flags)
    struct.pack_into("<I", buf, 8, crc_of(mv, CRC_START, size))
    tmp = path + ".tmp"
    f = open(tmp, "wb")
    try:
        _write_all(f, mv, size)
    except Exception:
        f.close()
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    f.close()
    _replace(tmp, path)
    dsync = getattr(os, "O_DIRECTORY", None)
    if dsync is not None:          # CPython on POSIX: make the rename durable
        d = os.path.dirname(path) or "."
        fd = os.open(d, os.O_RDONLY | dsync)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_all(f, mv, size):
    """Write mv[0:size] in CHUNK pieces straight from the buffer, then flush (and
    fsync where the runtime has it; littlefs commits on close)."""
    pos = 0
    while pos < size:
        n = size - pos
        if n > CHUNK:
            n = CHUNK
        w = f.write(mv[pos:pos + n])
        if not w:
            raise OSError(28, "write failed")   # ENOSPC-like: nothing written
        pos += w
    f.flush()
    fsync = getattr(os, "fsync", None)
    if fsync is not None:
        fsync(f.fileno())
