"""avg_pool and max_pool: TFLite int8 pooling over NHWC tensors (input and
output share scale and zero point), bit-exact with natmod/ta_pool.c."""

import numpy as np

from .bufcheck import INT8, buffer_arg, check_act, int_arg
from .conv import _batch_and_out
from .geometry import DIM_MAX, Geom, check_volume, taps, window_args, window_counts

_I8_LO, _I8_HI = -128, 127
AVG_POOL_K_MAX = 4096


def _pool_args(out, inp, in_h, in_w, channels, k_h, k_w, stride_h, stride_w, pad_top,
               pad_left, out_h, out_w, act_min, act_max, k_max):
    out = buffer_arg("out", out, INT8, writable=True)
    inp = buffer_arg("inp", inp, INT8)
    in_h = int_arg("in_h", in_h, 1, DIM_MAX)
    in_w = int_arg("in_w", in_w, 1, DIM_MAX)
    channels = int_arg("channels", channels, 1, DIM_MAX)
    k_h, k_w, stride_h, stride_w, pad_top, pad_left, out_h, out_w = window_args(
        k_h, k_w, stride_h, stride_w, pad_top, pad_left, out_h, out_w, in_h, in_w, k_max)
    act_min = int_arg("act_min", act_min, _I8_LO, _I8_HI)
    act_max = int_arg("act_max", act_max, _I8_LO, _I8_HI)
    check_act(act_min, act_max)
    in_vol = check_volume("inp", in_h, in_w, channels)
    out_vol = check_volume("out", out_h, out_w, channels)
    batch = _batch_and_out(inp, out, in_vol, out_vol)
    g = Geom(batch=batch, in_h=in_h, in_w=in_w, in_c=channels, out_h=out_h, out_w=out_w,
             out_c=channels, k_h=k_h, k_w=k_w, stride_h=stride_h, stride_w=stride_w,
             pad_top=pad_top, pad_left=pad_left)
    x = inp.arr.astype(np.int64).reshape(batch, in_h, in_w, channels)
    return out, x, g, act_min, act_max


def avg_pool(out, inp, in_h, in_w, channels, k_h, k_w, stride_h, stride_w, pad_top,
             pad_left, out_h, out_w, act_min, act_max):
    """out = clamp(round_half_away(sum / count), act_min, act_max) over the
    count in-input cells of each window (k_h, k_w <= 4096)."""
    out, x, g, act_min, act_max = _pool_args(
        out, inp, in_h, in_w, channels, k_h, k_w, stride_h, stride_w, pad_top, pad_left,
        out_h, out_w, act_min, act_max, AVG_POOL_K_MAX)
    total = np.zeros((g.batch, g.out_h, g.out_w, g.out_c), dtype=np.int64)
    for _, _, view in taps(x, g, 0):
        total += view
    count = window_counts(g)[None, :, :, None]
    # TFLite: (sum +- count / 2) / count in C, i.e. toward zero
    q = (np.abs(total) + count // 2) // count
    avg = np.where(total > 0, q, -q)
    out.arr[:] = np.clip(avg, act_min, act_max).astype(np.int8).reshape(-1)


def max_pool(out, inp, in_h, in_w, channels, k_h, k_w, stride_h, stride_w, pad_top,
             pad_left, out_h, out_w, act_min, act_max):
    """out = clamp(max of the in-input cells of each window, act_min, act_max)."""
    out, x, g, act_min, act_max = _pool_args(
        out, inp, in_h, in_w, channels, k_h, k_w, stride_h, stride_w, pad_top, pad_left,
        out_h, out_w, act_min, act_max, DIM_MAX)
    best = np.full((g.batch, g.out_h, g.out_w, g.out_c), -128, dtype=np.int64)
    # cells outside the input are -128, the value TFLite's maximum starts from
    for _, _, view in taps(x, g, -128):
        best = np.maximum(best, view)
    out.arr[:] = np.clip(best, act_min, act_max).astype(np.int8).reshape(-1)
