"""On-device adaptation strategies (issue 4). Runs unchanged on MicroPython and
CPython; all state changes and predictions are integer.

This slice: the prototype head, `Prototypes`.

    from tinyadapt import adapt
    p = adapt.Prototypes(model, layer=-2, max_classes=11)
    p.step(x, y)                 # one labelled sample (raw, or int8 with quantized=True)
    p.predict(x)                 # nearest class mean
    p.evaluate(xs, ys)           # accuracy (a float, reporting only)
    p.cost()                     # {'ram_bytes', 'macs_per_step', 'macs_per_predict', ...}
    p.state_bytes()              # counts, sums, means, bias as little-endian bytes
    p.reset()

Prototypes: the integer rule
----------------------------
Features: f = model.features(x, layer), the int8 output of the chosen layer (D
values, read as signed bytes, zero point NOT subtracted: the squared distance is
invariant to a common offset, so the feature zero point cancels).

step(x, y), for class c = y in [0, max_classes):

    count[c] += 1                                      (int32; refused at 2^24 - 1)
    sum[c][i] += f[i]                                  (int32, exact: |sum| < 2^31)
    m[c][i]   = round_half_away(sum[c][i] / count[c])  (int8: a mean of int8 values)
              = sign(s) * ((2 |s| + n) // (2 n)),  s = sum[c][i], n = count[c]
    b[c]      = -floor(||m[c]||^2 / 2)                 (int32, = -(sum m^2 >> 1))

Only class c's mean and bias are recomputed (D divisions, D multiplies).

predict(x): over the classes with count > 0,

    score[c] = sum_i f[i] * m[c][i] + b[c]             (exact int32)
    predict  = argmax_c score[c], ties to the lowest class index.

This is the nearest class mean in squared Euclidean distance, since
||f - m||^2 = ||f||^2 - 2 (f.m - ||m||^2 / 2); the floor of ||m||^2 / 2 makes
a class whose exact half-integer score is x - 1/2 tie with one scoring x (a
difference of exactly 1 in squared distance), and the tie goes to the lower
index. The means are the rounded int8 means above, not the float means.

The score is computed by the `_tinyadapt.fully_connected` kernel with the means
as int8 weights (n_out = max_classes, n_in = D), in_zp = out_zp = 0, the bias b
(minus an offset, below) as int32 bias, and every channel's (mult, shift) =
(2^30, 1 - k): requant(acc) ~ acc / 2^k rounded (double rounding, error < 1),
k = 0 being the identity. requant with a positive multiplier and the clamp are
monotone non-decreasing, so a class whose int8 output is below the maximum has
a strictly lower score. The ordering is made exact in passes:

    pass 1: k = k0, the smallest k with (D * 24576 >> k) + 2 <= 127 (|score| is
            at most D * (128*128 + 128*128/2)), offset B = 0: nothing clamps;
            candidates = classes (count > 0) whose output equals the maximum v;
    next:   B += v * 2^k (now |score - B| <= 2^k for every candidate),
            k = max(k - 6, 0), bias = b - B: candidates' outputs stay within
            +-65, and only candidates at the new maximum stay;
    stop:   one candidate left, or after the pass with k = 0, whose outputs are
            the exact score - B: the lowest index among the maxima wins.

Most predictions end after pass 1 (one class at the maximum). At most
P = ceil(k0 / 6) + 1 passes (4 for D = 32, 64 or 256), each C x D MACs.

cost() counts bytes and MACs from the sizes (C = max_classes, D = feature size):
ram_bytes = 4CD (sums) + CD (means) + 4C (counts) + 4C x 4 (bias, pass bias,
mult, shift) + C (kernel output) + C (candidates) = 5CD + 22C: the buffers this
adapter holds, not its Python objects (`objects_bytes`, an estimate of those
headers, is reported separately). feature_macs: the forward pass up to the
layer (fully_connected n_in n_out; conv2d out_h out_w out_c k_h k_w in_c;
depthwise out_h out_w out_c k_h k_w; pools and others 0).
"""
import array

import _tinyadapt

from . import tam

SHIFT_STEP = 6          # bits of k dropped per refinement pass
COUNT_MAX = (1 << 24) - 1  # keeps |sum| <= 128 * count < 2^31
_MULT = 1 << 30         # with shift 1 - k: requant(acc) = acc / 2^k (double rounding)


def _round_div(s, n):
    """round_half_away(s / n) for n > 0, in integers."""
    if s >= 0:
        return (2 * s + n) // (2 * n)
    return -((n - 2 * s) // (2 * n))


def _layer_macs(model, k):
    """Multiply-accumulates of layers 0..k (batch 1)."""
    T = model.tam.tensors
    total = 0
    for i in range(k + 1):
        l = model.layers[i]
        if l.op == tam.FULLY_CONNECTED:
            w = T[l.weights].shape
            total += w[0] * w[1]
        elif l.op == tam.CONV2D or l.op == tam.DEPTHWISE_CONV2D:
            o = T[l.output].shape
            w = T[l.weights].shape
            per = w[1] * w[2]
            if l.op == tam.CONV2D:
                per *= w[3]
            total += o[1] * o[2] * o[3] * per
    return total


class Prototypes:
    """Nearest-class-mean head on the int8 features of one layer of a Model.

    Prototypes(model, layer=-2, max_classes=None): `layer` an index into the
    layer table (negative counts from the end), whose output must be int8 with
    one row; `max_classes` the number of class ids it can learn (default: the
    model's n_classes), which may exceed the model's classes (new classes).
    The integer rule is in the module docstring."""

    def __init__(self, model, layer=-2, max_classes=None):
        self.model = model
        if not (hasattr(model, "features") and hasattr(model, "layers")):
            raise TypeError("model: expected a tinyadapt.Model, got %s" % type(model).__name__)
        if not isinstance(layer, int) or isinstance(layer, bool):
            raise TypeError("layer: expected an int (an index into the layer table), got %s"
                            % type(layer).__name__)
        n = len(model.layers)
        k = layer + n if layer < 0 else layer
        if k < 0 or k >= n:
            raise ValueError("layer %d: the model has %d layers (valid: %d..%d)"
                             % (layer, n, -n, n - 1))
        l = model.layers[k]
        t = model.tam.tensors[l.output]
        if t.dtype != tam.INT8:
            raise ValueError("layer %d (%s): its output is %s, features must be int8"
                             % (layer, l.name, t.dtype_name))
        if len(t.shape) > 1 and t.shape[0] != 1:
            raise ValueError("layer %d (%s): output shape %r has %d rows, features need one"
                             % (layer, l.name, t.shape, t.shape[0]))
        d = t.numel()
        if d > 65535:
            raise ValueError("layer %d (%s): %d features, at most 65535" % (layer, l.name, d))
        if max_classes is None:
            max_classes = model.n_classes
        if not isinstance(max_classes, int) or isinstance(max_classes, bool):
            raise TypeError("max_classes: expected an int, got %s" % type(max_classes).__name__)
        if max_classes < 1 or max_classes > 65535:
            raise ValueError("max_classes %d: must be in 1..65535" % max_classes)
        self.layer = k
        self.n_features = d
        self.max_classes = c = max_classes
        # the buffers (cost()['ram_bytes'] counts them)
        self.sums = array.array("i", bytes(4 * c * d))
        self.counts = array.array("i", bytes(4 * c))
        self.means = bytearray(c * d)
        self.bias = array.array("i", bytes(4 * c))
        self._pbias = array.array("i", bytes(4 * c))
        self._mult = array.array("i", [_MULT] * c)
        self._shift = array.array("i", bytes(4 * c))
        self._out = bytearray(c)
        self._cand = bytearray(c)
        bound = d * 24576
        k0 = 0
        while (bound >> k0) + 2 > 127:
            k0 += 1
        self.k0 = k0
        self.passes_max = (k0 + SHIFT_STEP - 1) // SHIFT_STEP + 1 if k0 else 1
        self.feature_macs = _layer_macs(model, k)

    # -- learning ------------------------------------------------------------

    def _label(self, y):
        if not isinstance(y, int) or isinstance(y, bool):
            raise TypeError("label: expected an int class id, got %s" % type(y).__name__)
        if y < 0 or y >= self.max_classes:
            raise ValueError("label %d out of range: max_classes is %d (ids 0..%d)"
                             % (y, self.max_classes, self.max_classes - 1))
        return y

    def step(self, x, y, quantized=False):
        """Add one labelled sample: x raw values (or the int8 input with
        quantized=True), y a class id in [0, max_classes). Returns None."""
        c = self._label(y)
        n = self.counts[c]
        if n >= COUNT_MAX:
            raise ValueError("class %d has %d samples: its int32 sums are full" % (c, n))
        f = self.model.features(x, self.layer, quantized)
        n += 1
        self.counts[c] = n
        d = self.n_features
        sums = self.sums
        means = self.means
        base = c * d
        norm = 0
        for i in range(d):
            v = f[i]
            if v > 127:
                v -= 256
            s = sums[base + i] + v
            sums[base + i] = s
            if s >= 0:
                m = (2 * s + n) // (2 * n)
            else:
                m = -((n - 2 * s) // (2 * n))
            means[base + i] = m & 255
            norm += m * m
        self.bias[c] = -(norm >> 1)

    def reset(self):
        """Forget every sample."""
        c = self.max_classes
        d = self.n_features
        for i in range(c * d):
            self.sums[i] = 0
            self.means[i] = 0
        for i in range(c):
            self.counts[i] = 0
            self.bias[i] = 0

    # -- inference -----------------------------------------------------------

    def classes(self):
        """The class ids that have samples, in increasing order."""
        return [c for c in range(self.max_classes) if self.counts[c] > 0]

    def predict(self, x, quantized=False):
        """The nearest class mean (module docstring): a class id."""
        f = self.model.features(x, self.layer, quantized)
        return self.predict_features(f)

    def predict_features(self, f):
        """predict on a feature vector already computed (int8 bytes, D values)."""
        c = self.max_classes
        counts = self.counts
        cand = self._cand
        out = self._out
        nc = 0
        for j in range(c):
            if counts[j] > 0:
                cand[j] = 1
                nc += 1
            else:
                cand[j] = 0
        if nc == 0:
            raise ValueError("no class has samples yet: call step() first")
        bias = self.bias
        pb = self._pbias
        shift = self._shift
        k = self.k0
        base = 0
        while True:
            for j in range(c):
                pb[j] = bias[j] - base
                shift[j] = 1 - k
            _tinyadapt.fully_connected(out, f, self.means, pb, self._mult, shift,
                                       self.n_features, c, 0, 0, -128, 127)
            vmax = -129
            for j in range(c):
                if cand[j]:
                    v = out[j]
                    if v > 127:
                        v -= 256
                    if v > vmax:
                        vmax = v
            nc = 0
            first = -1
            for j in range(c):
                if cand[j]:
                    v = out[j]
                    if v > 127:
                        v -= 256
                    if v == vmax:
                        nc += 1
                        if first < 0:
                            first = j
                    else:
                        cand[j] = 0
            if nc == 1 or k == 0:
                return first
            base += vmax << k
            k = k - SHIFT_STEP if k > SHIFT_STEP else 0

    def evaluate(self, xs, ys, quantized=False):
        """Accuracy (float, for reporting) over the samples xs with labels ys."""
        if len(xs) != len(ys):
            raise ValueError("evaluate: %d inputs but %d labels" % (len(xs), len(ys)))
        if len(xs) == 0:
            raise ValueError("evaluate: no samples")
        ok = 0
        for i in range(len(xs)):
            if self.predict(xs[i], quantized) == ys[i]:
                ok += 1
        return ok / len(xs)

    # -- accounting ----------------------------------------------------------

    def state_bytes(self):
        """counts, sums, means, bias as little-endian bytes (for parity checks)."""
        return bytes(self.counts) + bytes(self.sums) + bytes(self.means) + bytes(self.bias)

    def cost(self):
        """Extra RAM and work, counted from the sizes (module docstring)."""
        c = self.max_classes
        d = self.n_features
        head = c * d
        return {"ram_bytes": 5 * c * d + 22 * c,
                "objects_bytes": OBJECTS_BYTES,
                "feature_macs": self.feature_macs,
                "macs_per_step": self.feature_macs + d,
                "divs_per_step": d,
                "macs_per_predict": self.feature_macs + head,
                "macs_per_predict_max": self.feature_macs + self.passes_max * head,
                "passes_max": self.passes_max}


# Python objects of one Prototypes (the instance, its attribute table, the nine
# array/bytearray headers) on the 64-bit unix port: measured, see docs/adapt.md
OBJECTS_BYTES = 1024
