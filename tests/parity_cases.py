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
    out.extend(bad_cases(small_ints_only))
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

def micropython_script(case_list):
    lines = ["import _tinyadapt, array",
             "def run(name, args, writable):",
             "    try:",
             "        r = getattr(_tinyadapt, name)(*args)",
             "    except (TypeError, ValueError) as e:",
             "        print('EXC %s %s' % (type(e).__name__, e))",
             "        return",
             "    parts = [bytes(args[i]).hex() for i in writable]",
             "    print('OK %s %s' % (' '.join(parts) or '-', r))",
             ]
    for name, args in case_list:
        objs = []
        writable = []
        for i, a in enumerate(args):
            if isinstance(a, Buf):
                if a.typecode == "B":
                    objs.append(("bytearray(%r)" if a.writable else "%r") % a.data)
                else:
                    objs.append("array.array(%r, %r)" % (a.typecode, a.values()))
                if a.writable:
                    writable.append(i)
            else:
                objs.append(repr(a))
        lines.append("run(%r, [%s], %r)" % (name, ", ".join(objs), writable))
    lines.append("print('DONE')")
    return "\n".join(lines) + "\n"
