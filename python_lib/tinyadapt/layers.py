"""Layers over the `_tinyadapt` kernels (the same code on MicroPython and CPython)."""
import _tinyadapt


class Dense:
    """int8 fully-connected layer, TFLite quantization: per-output-channel weights
    (symmetric, int8, row-major n_out x n_in), int32 bias, requantization by an int32
    multiplier and shift per output channel, activation as a clamp.

    Buffers are kept by reference (for example memoryview slices of a model file),
    never copied.
    """

    def __init__(self, weights, bias, mult, shift, n_in, n_out, in_zp=0, out_zp=0,
                 act_min=-128, act_max=127):
        self.weights = weights
        self.bias = bias
        self.mult = mult
        self.shift = shift
        self.n_in = n_in
        self.n_out = n_out
        self.in_zp = in_zp
        self.out_zp = out_zp
        self.act_min = act_min
        self.act_max = act_max
        # one call with an empty batch is not possible (batch >= 1); check the
        # parameters now with a single zero input so a bad layer fails at creation
        self(bytes(n_in))

    def __call__(self, x, out=None):
        """Run on int8 input x (batch x n_in bytes); returns out (batch x n_out)."""
        if out is None:
            n = len(x)
            if n % self.n_in:
                raise ValueError("input size %d is not a multiple of n_in=%d" % (n, self.n_in))
            out = bytearray(n // self.n_in * self.n_out)
        _tinyadapt.fully_connected(out, x, self.weights, self.bias, self.mult, self.shift,
                                   self.n_in, self.n_out, self.in_zp, self.out_zp,
                                   self.act_min, self.act_max)
        return out

    def __repr__(self):
        return "Dense(%d -> %d)" % (self.n_in, self.n_out)
