"""Geometry of the NHWC spatial kernels: argument checks shared by conv2d,
depthwise_conv2d, avg_pool and max_pool (the same rules and texts as
natmod/ta_binding.c), the numpy window walk, and TFLite's SAME/VALID padding
rule as a pure helper.
"""

import numpy as np

from .bufcheck import int_arg

DIM_MAX = 65535
I31_MAX = (1 << 31) - 1


def window_args(k_h, k_w, stride_h, stride_w, pad_top, pad_left, out_h, out_w,
                in_h, in_w, k_max):
    """Check the window scalars in argument order; returns them as ints.
    pad_top in [0, k_h - 1]; out_h in [1, (in_h - 1 + pad_top) // stride_h + 1]
    (every window overlaps the input); likewise for the width."""
    k_h = int_arg("k_h", k_h, 1, k_max)
    k_w = int_arg("k_w", k_w, 1, k_max)
    stride_h = int_arg("stride_h", stride_h, 1, DIM_MAX)
    stride_w = int_arg("stride_w", stride_w, 1, DIM_MAX)
    pad_top = int_arg("pad_top", pad_top, 0, k_h - 1)
    pad_left = int_arg("pad_left", pad_left, 0, k_w - 1)
    out_h = int_arg("out_h", out_h, 1, (in_h - 1 + pad_top) // stride_h + 1)
    out_w = int_arg("out_w", out_w, 1, (in_w - 1 + pad_left) // stride_w + 1)
    return k_h, k_w, stride_h, stride_w, pad_top, pad_left, out_h, out_w


def check_volume(name, *dims):
    """ValueError("<name> too large") when the element count passes 2^31 - 1."""
    n = 1
    for d in dims:
        n *= d
    if n > I31_MAX:
        raise ValueError("%s too large" % name)
    return n


class Geom(object):
    """Shape of one spatial op (see ta_geom_t in natmod/ta_kernels.h)."""

    __slots__ = ("batch", "in_h", "in_w", "in_c", "out_h", "out_w", "out_c",
                 "k_h", "k_w", "stride_h", "stride_w", "pad_top", "pad_left")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw[k])


def taps(x, g, fill):
    """Yield (ky, kx, view) for every window offset: view[b, oy, ox, c] is
    the input cell (oy * stride_h - pad_top + ky, ox * stride_w - pad_left + kx)
    of image b, or ``fill`` where that cell lies outside the input.
    x: int64 array (batch, in_h, in_w, in_c)."""
    pad_bottom = max(0, (g.out_h - 1) * g.stride_h + g.k_h - g.pad_top - g.in_h)
    pad_right = max(0, (g.out_w - 1) * g.stride_w + g.k_w - g.pad_left - g.in_w)
    xp = np.pad(x, ((0, 0), (g.pad_top, pad_bottom), (g.pad_left, pad_right), (0, 0)),
                constant_values=fill)
    span_h = g.stride_h * (g.out_h - 1) + 1
    span_w = g.stride_w * (g.out_w - 1) + 1
    for ky in range(g.k_h):
        for kx in range(g.k_w):
            yield ky, kx, xp[:, ky:ky + span_h:g.stride_h, kx:kx + span_w:g.stride_w, :]


def window_counts(g):
    """Number of in-input cells of each window, shape (out_h, out_w)."""
    def inside(out_n, stride, pad, k, in_n):
        origin = np.arange(out_n, dtype=np.int64) * stride - pad
        lo = np.maximum(origin, 0)
        hi = np.minimum(origin + k, in_n)
        return hi - lo
    return np.outer(inside(g.out_h, g.stride_h, g.pad_top, g.k_h, g.in_h),
                    inside(g.out_w, g.stride_w, g.pad_left, g.k_w, g.in_w))


def compute_padding(padding, in_size, k, stride):
    """TFLite's SAME/VALID rule for one spatial axis (dilation 1), as
    ComputeOutSize and ComputePaddingWithOffset in tensorflow/lite/kernels/
    padding.h. Returns (out_size, pad_before):

        SAME:  out_size = ceil(in_size / stride)
        VALID: out_size = floor((in_size - k) / stride) + 1
        total  = max((out_size - 1) * stride + k - in_size, 0)
        pad_before = total // 2     (the odd cell, if any, goes after)

    ``padding`` is "same" or "valid" (any case). Raises ValueError for
    another padding, sizes < 1, or a VALID filter larger than the input.
    The results are valid pad_top/out_h (pad_left/out_w) arguments of the
    spatial kernels.
    """
    mode = str(padding).lower()
    if mode not in ("same", "valid"):
        raise ValueError("padding must be 'same' or 'valid'")
    if in_size < 1 or k < 1 or stride < 1:
        raise ValueError("in_size, k and stride must be >= 1")
    if mode == "same":
        out_size = (in_size + stride - 1) // stride
    else:
        if k > in_size:
            raise ValueError("VALID padding needs k <= in_size")
        out_size = (in_size - k) // stride + 1
    total = max((out_size - 1) * stride + k - in_size, 0)
    return out_size, total // 2
