"""Cases for the `_tinyadapt` parity tests: the same calls on every runtime.

A case is (function name, [args]); an arg is an int or a Buf. Each runtime turns a
Buf into its own object (bytearray / bytes / array.array), runs the call and reports
"OK <hex of each writable buffer> <return value>" or "EXC <type> <message>". The
runtimes' reports must be identical string for string: no tolerance.
"""
import random
import struct

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1


class Buf:
    """typecode: 'B' raw (bytearray, or bytes when read-only), 'b', 'i' or 'I'."""

    def __init__(self, data, typecode="B", writable=False):
        self.data = bytes(data)
        self.typecode = typecode
        self.writable = writable

    def values(self):
        fmt = {"b": "b", "B": "B", "i": "i", "I": "I", "h": "h"}[self.typecode]
        n = len(self.data) // struct.calcsize(fmt)
        return list(struct.unpack("<%d%s" % (n, fmt), self.data))


def i32s(values, typecode="B"):
    return Buf(struct.pack("<%di" % len(values), *values), typecode)


def random_fc(rng, n_batch, n_in, n_out, typecodes=("B", "i")):
    w = bytes(rng.getrandbits(8) for _ in range(n_in * n_out))
    x = bytes(rng.getrandbits(8) for _ in range(n_in * n_batch))
    bias = [rng.randint(-(1 << 20), 1 << 20) for _ in range(n_out)]
    mult = [rng.randint(1 << 30, I32_MAX) for _ in range(n_out)]
    shift = [rng.randint(-12, 2) for _ in range(n_out)]
    in_zp = rng.randint(-128, 127)
    out_zp = rng.randint(-128, 127)
    lo = rng.randint(-128, 0)
    hi = rng.randint(lo, 127)
    tc = rng.choice(typecodes)
    return ("fully_connected", [Buf(bytes(n_batch * n_out), "B", True), Buf(x), Buf(w),
                                i32s(bias, tc), i32s(mult, tc), i32s(shift, tc),
                                n_in, n_out, in_zp, out_zp, lo, hi])


def cases(seed=1234, small_ints_only=False):
    """Kernel calls: random, edge and bad. small_ints_only keeps scalars within
    31-bit small ints (for runtimes without big ints)."""
    rng = random.Random(seed)
    out = []
    for n_batch, n_in, n_out in [(1, 1, 1), (1, 3, 5), (2, 7, 3), (3, 16, 10), (1, 64, 33),
                                 (4, 31, 17), (1, 300, 2)]:
        for _ in range(2):
            out.append(random_fc(rng, n_batch, n_in, n_out))
    # edges: zero points at the ends, saturation, extreme shifts and multipliers
    for in_zp, out_zp, shift, mult in [(-128, 127, 30, I32_MAX), (127, -128, -31, 1 << 30),
                                       (0, 0, 0, 0), (-128, -128, -31, I32_MAX),
                                       (127, 127, 30, 1)]:
        w = bytes([0x80, 0x7F, 0xFF, 0x01, 0x80, 0x80])
        x = bytes([0x80, 0x7F, 0x00])
        out.append(("fully_connected", [Buf(bytes(2), "B", True), Buf(x, "b"), Buf(w, "b"),
                                        i32s([I32_MAX, I32_MIN]), i32s([mult, mult], "i"),
                                        i32s([shift, shift], "i"), 3, 2, in_zp, out_zp, -128, 127]))
    # requantize, channel-last, raw and typed
    for count, n_ch in [(1, 1), (5, 3), (7, 1), (0, 2), (4, 8)]:
        vals = [rng.randint(I32_MIN, I32_MAX) for _ in range(count * n_ch)]
        vals[:2] = [I32_MIN, I32_MAX][:len(vals[:2])]
        mult = [rng.choice([0, 1, 1 << 30, I32_MAX, rng.randint(0, I32_MAX)]) for _ in range(n_ch)]
        shift = [rng.choice([-31, -5, 0, 3, 30]) for _ in range(n_ch)]
        out.append(("requantize", [Buf(bytes(count * n_ch), "B", True),
                                   i32s(vals, rng.choice("Bi")), i32s(mult, "i"), i32s(shift),
                                   rng.randint(-128, 127), -128, 127]))
    out.append(("requantize", [Buf(bytes(3), "B", True), i32s([1000, -1000, 5]), i32s([1 << 30]),
                               i32s([0]), 0, -20, 20]))
    # scalar helpers
    big = [I32_MIN, I32_MIN + 1, -(1 << 30) - 1, -5, -3, -1, 0, 1, 2, 3, 5, (1 << 30), I32_MAX]
    if small_ints_only:
        big = [v for v in big if -(1 << 30) <= v < (1 << 30)]
    for x in big:
        for n in (0, 1, 2, 7, 30, 31):
            out.append(("rounding_rshift", [x, n]))
    for a in big:
        for b in big[::3]:
            out.append(("srdhm", [a, b]))
    for x in big:
        for m in [v for v in (0, 1, 1 << 30, I32_MAX) if not small_ints_only or v < (1 << 30)]:
            for s in (-31, -1, 0, 1, 30):
                out.append(("mul_by_quantized_mult", [x, m, s]))
    for x, lo, hi in [(300, -128, 127), (-300, -128, 127), (5, 5, 5), (big[0], big[1], big[-1])]:
        out.append(("saturate", [x, lo, hi]))
    for n, seed in [(1, 1), (4, 0x1234), (17, 0xFFFFFFFF), (8, 2463534242), (0, 7)]:
        if small_ints_only and seed >= (1 << 30):
            continue
        out.append(("xorshift32_fill", [Buf(bytes(4 * n), rng.choice("BI"), True), seed]))
    for n in (0, 1, 7, 64, 1000):
        data = bytes(rng.getrandbits(8) for _ in range(n))
        out.append(("crc32", [Buf(data)]))
        out.append(("crc32", [Buf(data, rng.choice("bB")), rng.choice([0, 1, 0x7FFFFFFF])]))
    if not small_ints_only:
        out.append(("crc32", [Buf(b"tinyadapt"), 0xFFFFFFFF]))
    out.extend(nn_cases(rng, small_ints_only))
    out.extend(bad_cases(small_ints_only))
    out.extend(nn_bad_cases(small_ints_only))
    return out


def bad_cases(small_ints_only=False):
    ok_fc = random_fc(random.Random(7), 1, 3, 2)[1]

    def fc(**kw):
        a = list(ok_fc)
        names = ["out", "inp", "weights", "bias", "mult", "shift", "n_in", "n_out", "in_zp",
                 "out_zp", "act_min", "act_max"]
        for k, v in kw.items():
            a[names.index(k)] = v
        return ("fully_connected", a)

    out = [
        fc(out=5), fc(inp=7), fc(weights=Buf(bytes(6), "h")), fc(bias=Buf(bytes(8), "h")),
        fc(out=Buf(bytes(2), "B", False)),  # read-only output
        fc(bias=Buf(bytes(7))), fc(mult=Buf(bytes(6))),
        fc(n_in=0), fc(n_out=65536), fc(in_zp=128), fc(out_zp=-129), fc(act_min=-129),
        fc(act_max=128), fc(act_min=10, act_max=9),
        fc(weights=Buf(bytes(5))), fc(bias=i32s([0])), fc(mult=i32s([1, 2, 3])),
        fc(shift=i32s([0])), fc(inp=Buf(bytes(4))), fc(inp=Buf(b"")),
        fc(out=Buf(bytes(3), "B", True)),
        fc(shift=i32s([0, 31])), fc(shift=i32s([-32, 0])), fc(mult=i32s([-1, 5])),
        fc(shift=i32s([31, 0]), mult=i32s([-1, 0])),
        ("requantize", [Buf(bytes(2), "B", True), i32s([1, 2]), Buf(b""), Buf(b""), 0, -128, 127]),
        ("requantize", [Buf(bytes(2), "B", True), i32s([1, 2]), i32s([1]), i32s([1, 2]), 0, -128, 127]),
        ("requantize", [Buf(bytes(2), "B", True), i32s([1, 2, 3]), i32s([1, 1]), i32s([1, 1]), 0, -128, 127]),
        ("requantize", [Buf(bytes(1), "B", True), i32s([1, 2]), i32s([1]), i32s([0]), 0, -128, 127]),
        ("requantize", [Buf(bytes(1), "B", True), i32s([1]), i32s([1]), i32s([0]), 0, 5, 4]),
        ("rounding_rshift", [1, 32]), ("rounding_rshift", [1, -1]),
        ("mul_by_quantized_mult", [1, -1, 0]), ("mul_by_quantized_mult", [1, 1, 31]),
        ("mul_by_quantized_mult", [1, 1, -32]),
        ("saturate", [0, 1, 0]),
        ("xorshift32_fill", [Buf(bytes(8), "B", True), 0]),
        ("xorshift32_fill", [Buf(bytes(6), "B", True), 1]),
        ("xorshift32_fill", [Buf(bytes(8), "i", True), 1]),
        ("xorshift32_fill", [Buf(bytes(8), "B", False), 1]),
        ("crc32", [5]), ("crc32", [Buf(bytes(8), "i")]), ("crc32", [Buf(b"x"), -1]),
    ]
    if not small_ints_only:
        out += [("rounding_rshift", [I32_MAX + 1, 0]), ("rounding_rshift", [I32_MIN - 1, 0]),
                ("rounding_rshift", [1 << 70, 0]), ("srdhm", [0, -(1 << 64)]),
                ("xorshift32_fill", [Buf(bytes(8), "B", True), 1 << 32]),
                ("xorshift32_fill", [Buf(bytes(8), "B", True), -1]),
                ("crc32", [Buf(b"x"), 1 << 32])]
    return out


# ---- int8 inference kernels (ABI 2) ----

def tflite_padding(mode, in_size, k, stride):
    """(out_size, pad_before) by TFLite's SAME/VALID rule (docs/kernels.md)."""
    if mode == "same":
        out_size = (in_size + stride - 1) // stride
    else:
        out_size = (in_size - k) // stride + 1
    return out_size, max((out_size - 1) * stride + k - in_size, 0) // 2


def rand_i8(rng, n, lo=-128, hi=127):
    return bytes((rng.randint(lo, hi) & 0xFF) for _ in range(n))


def random_window(rng, in_h, in_w, k_max=4, explicit=False):
    """(k_h, k_w, stride_h, stride_w, pad_top, pad_left, out_h, out_w): TFLite
    SAME/VALID geometry, or (explicit) any pads and output sizes the kernels
    accept."""
    k_h, k_w = rng.randint(1, min(in_h, k_max)), rng.randint(1, min(in_w, k_max))
    s_h, s_w = rng.randint(1, 3), rng.randint(1, 3)
    if explicit:
        pt, pl = rng.randint(0, k_h - 1), rng.randint(0, k_w - 1)
        oh = rng.randint(1, (in_h - 1 + pt) // s_h + 1)
        ow = rng.randint(1, (in_w - 1 + pl) // s_w + 1)
    else:
        mode = rng.choice(["same", "valid"])
        oh, pt = tflite_padding(mode, in_h, k_h, s_h)
        ow, pl = tflite_padding(mode, in_w, k_w, s_w)
    return [k_h, k_w, s_h, s_w, pt, pl, oh, ow]


def random_quant(rng, n_ch, fan_in, tc):
    """bias, mult, shift buffers for n_ch channels with scales that keep most
    outputs inside int8, and zero points / activation bounds."""
    bias = [rng.randint(-20000, 20000) for _ in range(n_ch)]
    mult = [rng.randint(1 << 30, I32_MAX) for _ in range(n_ch)]
    top = max(fan_in, 1).bit_length()
    shift = [rng.randint(-top - 9, -top - 5) for _ in range(n_ch)]
    lo = rng.choice([-128, -128, 0, rng.randint(-128, 0)])
    hi = rng.choice([127, 127, rng.randint(lo, 127)])
    return ([i32s(bias, tc), i32s(mult, tc), i32s(shift, tc)],
            [rng.randint(-128, 127), rng.randint(-128, 127), lo, hi])


def conv_case(rng, batch, in_h, in_w, in_c, out_c, win, depthwise=False):
    k_h, k_w, oh, ow = win[0], win[1], win[6], win[7]
    oc = in_c * out_c if depthwise else out_c  # out_c is the depth multiplier then
    n_w = k_h * k_w * oc if depthwise else oc * k_h * k_w * in_c
    tc = rng.choice("Bi")
    qbufs, qs = random_quant(rng, oc, k_h * k_w * (1 if depthwise else in_c), tc)
    return ("depthwise_conv2d" if depthwise else "conv2d",
            [Buf(bytes(batch * oh * ow * oc), "B", True),
             Buf(rand_i8(rng, batch * in_h * in_w * in_c), rng.choice("Bb")),
             Buf(rand_i8(rng, n_w, -127), rng.choice("Bb"))] + qbufs
            + [in_h, in_w, in_c, out_c] + list(win) + qs)


def pool_case(rng, kind, batch, in_h, in_w, ch, win):
    lo = rng.choice([-128, -128, 0, rng.randint(-128, 0)])
    hi = rng.choice([127, 127, rng.randint(lo, 127)])
    return (kind, [Buf(bytes(batch * win[6] * win[7] * ch), "B", True),
                   Buf(rand_i8(rng, batch * in_h * in_w * ch), rng.choice("Bb")),
                   in_h, in_w, ch] + list(win) + [lo, hi])


def nn_cases(rng, small_ints_only=False):
    """Random and edge calls of conv2d, depthwise_conv2d, avg_pool, max_pool,
    add, softmax and argmax (small shapes: the list stays fast everywhere)."""
    big = (1 << 30) - 1 if small_ints_only else I32_MAX  # largest scalar multiplier
    m30 = (1 << 30) - 1 if small_ints_only else 1 << 30
    out = []
    # conv2d: TFLite SAME/VALID geometry, then explicit pads and output sizes
    for i in range(14):
        in_h, in_w = rng.randint(1, 7), rng.randint(1, 7)
        win = random_window(rng, in_h, in_w, explicit=i >= 9)
        out.append(conv_case(rng, rng.randint(1, 2), in_h, in_w, rng.randint(1, 5),
                             rng.randint(1, 5), win))
    # 1x1 conv (pointwise), a filter as large as the input, stride larger than k
    out.append(conv_case(rng, 2, 3, 4, 6, 3, [1, 1, 1, 1, 0, 0, 3, 4]))
    out.append(conv_case(rng, 1, 3, 3, 2, 2, [3, 3, 1, 1, 1, 1, 3, 3]))
    out.append(conv_case(rng, 1, 5, 5, 1, 2, [2, 2, 3, 3, 0, 0, 2, 2]))
    # depthwise: multipliers 1..3
    for i in range(10):
        in_h, in_w = rng.randint(1, 7), rng.randint(1, 7)
        win = random_window(rng, in_h, in_w, explicit=i >= 7)
        out.append(conv_case(rng, rng.randint(1, 2), in_h, in_w, rng.randint(1, 4),
                             rng.randint(1, 3), win, depthwise=True))
    # conv edges: zero points at the ends, saturating requantization
    for in_zp, out_zp, mult, shift in [(-128, 127, I32_MAX, 30), (127, -128, m30, -31),
                                       (0, 0, 0, 0), (-128, -128, I32_MAX, -31)]:
        c = conv_case(rng, 1, 3, 3, 2, 2, [2, 2, 1, 1, 1, 1, 3, 3])
        c[1][3] = i32s([I32_MAX, I32_MIN])
        c[1][4] = i32s([mult, mult], "i")
        c[1][5] = i32s([shift, shift])
        c[1][-4:-2] = [in_zp, out_zp]
        out.append(c)
    # pooling, including global average pooling (the full window)
    for kind in ("avg_pool", "max_pool"):
        for i in range(9):
            in_h, in_w = rng.randint(1, 7), rng.randint(1, 7)
            win = random_window(rng, in_h, in_w, explicit=i >= 6)
            out.append(pool_case(rng, kind, rng.randint(1, 2), in_h, in_w, rng.randint(1, 5), win))
        out.append(pool_case(rng, kind, 2, 4, 5, 3, [4, 5, 1, 1, 0, 0, 1, 1]))
        out.append((kind, [Buf(bytes(2), "B", True), Buf(bytes([0x80] * 8), "b"),
                           2, 2, 2, 2, 2, 2, 2, 0, 0, 1, 1, -128, 127]))
    # average rounding, half away from zero: windows of 2 summing to +-1, +-3
    out.append(("avg_pool", [Buf(bytes(4), "B", True),
                             Buf(bytes([1, 0, 0xFF, 0, 2, 1, 0xFE, 0xFF]), "b"),
                             1, 8, 1, 1, 2, 1, 2, 0, 0, 1, 4, -128, 127]))
    # add: realistic multipliers, extreme ones, aliasing-free same-size inputs
    for n in (1, 5, 16, 33):
        ms = [rng.randint(m30, big) for _ in range(3)]
        sh = [rng.randint(-3, -1), rng.randint(-3, -1), rng.randint(-22, -18)]
        lo = rng.choice([-128, 0])
        out.append(("add", [Buf(bytes(n), "B", True), Buf(rand_i8(rng, n), rng.choice("Bb")),
                            Buf(rand_i8(rng, n), rng.choice("Bb")),
                            rng.randint(-128, 127), ms[0], sh[0], rng.randint(-128, 127), ms[1],
                            sh[1], rng.randint(-128, 127), ms[2], sh[2], lo, 127]))
    edge = bytes([0x80, 0x7F, 0x00, 0xFF])
    for zp1, zp2, m, s, ozp in [(-128, 127, big, 0, 127), (127, -128, big, -31, -128),
                                (0, 0, 0, 0, 0), (-128, -128, m30, -1, 0)]:
        out.append(("add", [Buf(bytes(4), "B", True), Buf(edge), Buf(edge[::-1], "b"),
                            zp1, m, s, zp2, m, s, ozp, m, s, -128, 127]))
    out.append(("add", [Buf(b"", "B", True), Buf(b""), Buf(b""), 0, 1, 0, 0, 1, 0, 0, 1, 0,
                        -128, 127]))
    # softmax: TFLite-derived parameters for a few scales, then edges
    for rows, n, lo_hi, shift in [(1, 5, (-128, 127), 23), (3, 10, (-10, 10), 25),
                                  (2, 40, (-128, 127), 22), (1, 1, (0, 0), 26),
                                  (4, 7, (100, 104), 27), (1, 100, (-128, 127), 24)]:
        mult = rng.randint(m30, big)
        diff_min = -((31 << 26) >> shift)
        out.append(("softmax", [Buf(bytes(rows * n), "B", True),
                                Buf(rand_i8(rng, rows * n, *lo_hi), rng.choice("Bb")),
                                n, mult, shift, diff_min]))
    same = bytes([0x05] * 511)
    out.append(("softmax", [Buf(bytes(511), "B", True), Buf(same), 511, m30, 27, -15]))
    out.append(("softmax", [Buf(bytes(6), "B", True), Buf(bytes([0, 1, 2, 0x80, 0xFF, 2])),
                            6, m30, 31, 0]))
    out.append(("softmax", [Buf(bytes(4), "B", True), Buf(bytes([0, 50, 100, 0x80])), 4, 0, 0,
                            -(1 << 30)]))
    if not small_ints_only:
        out.append(("softmax", [Buf(bytes(8), "B", True), Buf(rand_i8(rng, 8)), 4, I32_MAX,
                                0, I32_MIN]))
    # argmax: raw and typed int32 output, ties on the lowest index
    for rows, n, hi in [(1, 1, 127), (3, 7, -126), (2, 40, 127), (5, 3, -127)]:
        out.append(("argmax", [Buf(bytes(4 * rows), rng.choice("Bi"), True),
                               Buf(rand_i8(rng, rows * n, -128, hi), rng.choice("Bb")), n]))
    return out


def nn_bad_cases(small_ints_only=False):
    """Every error rule of the ABI 2 kernels, in check order."""
    rng = random.Random(11)
    m30 = (1 << 30) - 1 if small_ints_only else 1 << 30
    conv_ok = conv_case(rng, 1, 3, 3, 2, 2, [2, 2, 1, 1, 1, 1, 3, 3])[1]
    dw_ok = conv_case(rng, 1, 3, 3, 2, 2, [2, 2, 1, 1, 1, 1, 3, 3], depthwise=True)[1]
    pool_ok = pool_case(rng, "avg_pool", 2, 3, 4, 2, [2, 2, 2, 2, 1, 0, 2, 2])[1]
    conv_names = ["out", "inp", "weights", "bias", "mult", "shift", "in_h", "in_w", "in_c",
                  "out_c", "k_h", "k_w", "stride_h", "stride_w", "pad_top", "pad_left", "out_h",
                  "out_w", "in_zp", "out_zp", "act_min", "act_max"]
    pool_names = ["out", "inp", "in_h", "in_w", "channels", "k_h", "k_w", "stride_h",
                  "stride_w", "pad_top", "pad_left", "out_h", "out_w", "act_min", "act_max"]

    def edit(name, ok, names, kw):
        a = list(ok)
        for k, v in kw.items():
            a[names.index(k)] = v
        return (name, a)

    def conv(**kw):
        return edit("conv2d", conv_ok, conv_names, kw)

    def dw(**kw):
        return edit("depthwise_conv2d", dw_ok, conv_names[:9] + ["depth_multiplier"]
                    + conv_names[10:], kw)

    def pool(kind="avg_pool", **kw):
        return edit(kind, pool_ok, pool_names, kw)

    out = [
        conv(out=5), conv(inp=Buf(bytes(18), "h")), conv(weights=7), conv(bias=Buf(bytes(8), "h")),
        conv(mult=Buf(bytes(6))), conv(shift=Buf(bytes(8), "I")),
        conv(out=Buf(bytes(18), "B", False)),
        conv(in_h=0), conv(in_w=65536), conv(in_c=0), conv(out_c=65536), conv(k_h=0),
        conv(k_w=65536), conv(stride_h=0), conv(stride_w=65536), conv(pad_top=2),
        conv(pad_left=-1), conv(out_h=5), conv(out_h=0), conv(out_w=5), conv(in_zp=128),
        conv(out_zp=-129), conv(act_min=-129), conv(act_max=128), conv(act_min=5, act_max=4),
        conv(in_h=65535, in_w=65535, k_h=1, k_w=1, pad_top=0, pad_left=0),
        conv(out_c=40000, in_c=40000, k_h=2, k_w=2),
        conv(in_h=300, in_w=300, in_c=1, out_c=65535, k_h=1, k_w=1, pad_top=0, pad_left=0,
             out_h=300, out_w=300),
        conv(in_h=40000, in_w=40000, in_c=1, out_c=2, k_h=1, k_w=1, pad_top=0, pad_left=0,
             out_h=40000, out_w=40000),
        conv(weights=Buf(bytes(15))), conv(bias=i32s([0])), conv(mult=i32s([1, 2, 3])),
        conv(shift=i32s([0])), conv(inp=Buf(bytes(17))), conv(inp=Buf(b"")),
        conv(out=Buf(bytes(17), "B", True)),
        conv(shift=i32s([0, 31])), conv(shift=i32s([-32, 0])), conv(mult=i32s([5, -1])),
        conv(shift=i32s([31, 0]), mult=i32s([-1, 0])),
        dw(depth_multiplier=0), dw(in_c=2, depth_multiplier=32768), dw(in_c=3),
        dw(weights=Buf(bytes(7))), dw(bias=i32s([0, 0, 0])), dw(pad_left=2), dw(out_w=5),
        dw(in_h=65535, in_w=65535, k_h=1, k_w=1, pad_top=0, pad_left=0),
        dw(shift=i32s([0, 0, 0, 31])), dw(mult=i32s([0, 0, 0, -5])),
        pool(out=5), pool(inp=Buf(bytes(24), "i")), pool(out=Buf(bytes(16), "B", False)),
        pool(in_h=0), pool(channels=65536), pool(k_h=4097), pool("max_pool", k_h=4097),
        pool(k_w=0), pool(stride_w=0), pool(pad_top=2), pool(out_h=3), pool(out_w=3),
        pool("max_pool", pad_left=2), pool(act_min=-200), pool(act_min=1, act_max=0),
        pool(in_h=65535, in_w=65535, channels=2, k_h=2, k_w=2, out_h=3, out_w=3),
        pool(inp=Buf(bytes(23))), pool(inp=Buf(b"")), pool(out=Buf(bytes(15), "B", True)),
        pool("max_pool", out=Buf(bytes(17), "B", True)),
        ("add", [7, Buf(b"ab"), Buf(b"cd"), 0, 1, 0, 0, 1, 0, 0, 1, 0, -128, 127]),
        ("add", [Buf(bytes(2), "B", True), Buf(b"ab"), Buf(bytes(8), "i"), 0, 1, 0, 0, 1, 0, 0,
                 1, 0, -128, 127]),
        ("add", [Buf(bytes(2), "B", False), Buf(b"ab"), Buf(b"cd"), 0, 1, 0, 0, 1, 0, 0, 1, 0,
                 -128, 127]),
    ]
    add_ok = [Buf(bytes(2), "B", True), Buf(b"ab"), Buf(b"cd"), 0, m30, -1, 0, m30, -1,
              0, m30, -20, -128, 127]
    for i, bad in [(3, 128), (4, -1), (5, 1), (5, -32), (6, -129), (7, -5), (8, 3), (9, 200),
                   (10, -1), (11, 1), (12, -129), (13, 128)]:
        a = list(add_ok)
        a[i] = bad
        out.append(("add", a))
    out += [
        ("add", add_ok[:12] + [3, 2]),
        ("add", add_ok[:2] + [Buf(b"c")] + add_ok[3:]),
        ("add", [Buf(bytes(3), "B", True)] + add_ok[1:]),
        ("softmax", [5, Buf(b"ab"), 2, m30, 27, -15]),
        ("softmax", [Buf(bytes(2), "B", True), Buf(bytes(8), "i"), 2, m30, 27, -15]),
        ("softmax", [Buf(bytes(2), "B", False), Buf(b"ab"), 2, m30, 27, -15]),
        ("softmax", [Buf(bytes(2), "B", True), Buf(b"ab"), 0, m30, 27, -15]),
        ("softmax", [Buf(bytes(512), "B", True), Buf(bytes(512)), 512, m30, 27, -15]),
        ("softmax", [Buf(bytes(2), "B", True), Buf(b"ab"), 2, -1, 27, -15]),
        ("softmax", [Buf(bytes(2), "B", True), Buf(b"ab"), 2, m30, 32, -15]),
        ("softmax", [Buf(bytes(2), "B", True), Buf(b"ab"), 2, m30, -1, -15]),
        ("softmax", [Buf(bytes(2), "B", True), Buf(b"ab"), 2, m30, 27, 1]),
        ("softmax", [Buf(bytes(3), "B", True), Buf(b"abc"), 2, m30, 27, -15]),
        ("softmax", [Buf(bytes(0), "B", True), Buf(b""), 2, m30, 27, -15]),
        ("softmax", [Buf(bytes(3), "B", True), Buf(b"ab"), 2, m30, 27, -15]),
        ("argmax", [5, Buf(b"ab"), 2]),
        ("argmax", [Buf(bytes(4), "b", True), Buf(b"ab"), 2]),
        ("argmax", [Buf(bytes(4), "I", True), Buf(b"ab"), 2]),
        ("argmax", [Buf(bytes(4), "B", False), Buf(b"ab"), 2]),
        ("argmax", [Buf(bytes(6), "B", True), Buf(b"ab"), 2]),
        ("argmax", [Buf(bytes(4), "B", True), Buf(bytes(8), "i"), 2]),
        ("argmax", [Buf(bytes(4), "B", True), Buf(b"ab"), 0]),
        ("argmax", [Buf(bytes(4), "B", True), Buf(b"ab"), 65536]),
        ("argmax", [Buf(bytes(4), "B", True), Buf(b"abc"), 2]),
        ("argmax", [Buf(bytes(0), "B", True), Buf(b""), 2]),
        ("argmax", [Buf(bytes(4), "B", True), Buf(b"abcd"), 2]),
    ]
    if not small_ints_only:
        out += [("add", add_ok[:4] + [1 << 31] + add_ok[5:]),
                ("softmax", [Buf(bytes(2), "B", True), Buf(b"ab"), 2, m30, 27, I32_MIN - 1]),
                conv(in_h=1 << 40), pool(k_h=-(1 << 40))]
    return out


# ---- running on CPython (host_sim) ----

def to_host(arg):
    import array
    if not isinstance(arg, Buf):
        return arg
    if arg.typecode == "B":
        return bytearray(arg.data) if arg.writable else bytes(arg.data)
    return array.array(arg.typecode, arg.values())


def report(name, res, objs, args):
    parts = []
    for a, o in zip(args, objs):
        if isinstance(a, Buf) and a.writable:
            parts.append(bytes(memoryview(o).cast("B")).hex() if not isinstance(o, (bytes, bytearray))
                         else bytes(o).hex())
    return "OK %s %s" % (" ".join(parts) or "-", res)


def run_host(module, case):
    name, args = case
    objs = [to_host(a) for a in args]
    try:
        res = getattr(module, name)(*objs)
    except (TypeError, ValueError) as e:
        return "EXC %s %s" % (type(e).__name__, e)
    return report(name, res, objs, args)


# ---- a MicroPython script that runs the same cases ----

def encode_case(name, args):
    """One case as a short string, decoded by the script's run(): "name arg ..."
    with an arg "i<int>", "r<b64>" (bytes), "w<b64>" (bytearray) or
    "a<typecode><b64>" / "A<typecode><b64>" (array.array from little-endian
    bytes; "A": writable, reported); <b64> is the base64 of the bytes. One
    string constant per case keeps the script small to compile: a board
    compiles the whole script in its heap."""
    import base64

    def b64(data):
        return base64.b64encode(data).decode()

    parts = [name]
    for a in args:
        if isinstance(a, Buf):
            if a.typecode == "B":
                parts.append(("w" if a.writable else "r") + b64(a.data))
            else:
                parts.append(("A" if a.writable else "a") + a.typecode + b64(a.data))
        else:
            parts.append("i%d" % a)
    return " ".join(parts)


def micropython_script(case_list):
    lines = ["import _tinyadapt, array, binascii, struct",
             "SIZE = {'b': 1, 'B': 1, 'h': 2, 'i': 4, 'I': 4}",
             "def arg(f):",
             "    k = f[0]",
             "    if k == 'i':",
             "        return int(f[1:])",
             "    if k == 'r':",
             "        return binascii.a2b_base64(f[1:])",
             "    if k == 'w':",
             "        return bytearray(binascii.a2b_base64(f[1:]))",
             "    tc = f[1]",
             "    raw = binascii.a2b_base64(f[2:])",
             "    return array.array(tc, struct.unpack('<%d%s' % (len(raw) // SIZE[tc], tc), raw))",
             "def run(case):",
             "    fields = case.split(' ')",
             "    name = fields[0]",
             "    args = [arg(f) for f in fields[1:]]",
             "    writable = [i for i, f in enumerate(fields[1:]) if f[0] in 'wA']",
             "    try:",
             "        r = getattr(_tinyadapt, name)(*args)",
             "    except (TypeError, ValueError) as e:",
             "        print('EXC %s %s' % (type(e).__name__, e))",
             "        return",
             "    parts = [binascii.hexlify(bytes(args[i])).decode() for i in writable]",
             "    print('OK %s %s' % (' '.join(parts) or '-', r))",
             ]
    # one tuple of strings, not one statement per case: each statement costs the
    # compiler about 200 bytes of heap, a string constant little more than itself
    lines.append("for case in (")
    for name, args in case_list:
        lines.append("%r," % encode_case(name, args))
    lines.append("):")
    lines.append("    run(case)")
    lines.append("print('DONE')")
    return "\n".join(lines) + "\n"
