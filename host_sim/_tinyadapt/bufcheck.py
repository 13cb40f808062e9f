"""Argument validation for the host `_tinyadapt`, with the exception types and
messages of docs/kernels.md (the MicroPython binding raises the same text).

Buffers are classified by ``memoryview(obj).format``:

* ``b`` / ``B`` (bytes, bytearray, array 'b'/'B', int8/uint8 arrays): raw bytes,
  accepted for every element type; int32/uint32 read them little-endian.
* int32 also accepts a 4-byte ``i`` (or ``l`` where long is 4 bytes), uint32 a
  4-byte ``I`` / ``L``; a leading ``@``, ``=`` or ``<`` is ignored (the host
  is little-endian), ``>`` / ``!`` are refused as a wrong typecode.

A multi-dimensional buffer is read flat if it is C-contiguous; any other
non-contiguous buffer is refused as ``"<arg>: expected a buffer"``.

Scalars go through ``operator.index``: Python ints, numpy integers and bools
(True == 1, as MicroPython's ``mp_obj_get_int`` takes them) are accepted; a
float, str or None raises TypeError.
"""

import operator
import sys

import numpy as np

INT8 = "int8"
INT32 = "int32"
UINT32 = "uint32"

_DTYPES = {INT8: np.dtype(np.int8), INT32: np.dtype("<i4"), UINT32: np.dtype("<u4")}
_TYPED = {INT32: ("i", "l"), UINT32: ("I", "L")}

I32_MIN = -(1 << 31)
I32_MAX = (1 << 31) - 1

if sys.byteorder != "little":  # pragma: no cover - every supported host is
    raise ImportError("host _tinyadapt assumes a little-endian host")


class Buf(object):
    """A validated buffer: ``arr`` is a flat numpy view of its elements (shares
    memory with the caller's object), ``nbytes`` its size in bytes."""

    __slots__ = ("name", "arr", "nbytes")

    def __init__(self, name, arr, nbytes):
        self.name = name
        self.arr = arr
        self.nbytes = nbytes


def buffer_arg(name, obj, kind, writable=False):
    """Check one buffer argument (protocol, typecode, writability, multiple of
    4 for raw int32/uint32) and return a Buf; raise the spec's errors."""
    try:
        mv = memoryview(obj)
    except TypeError:
        raise TypeError("%s: expected a buffer" % name) from None
    if not mv.c_contiguous:
        raise TypeError("%s: expected a buffer" % name)
    fmt = mv.format
    if fmt[:1] in ("@", "=", "<"):
        fmt = fmt[1:]
    raw = fmt in ("b", "B")
    if not raw and not (kind in _TYPED and fmt in _TYPED[kind] and mv.itemsize == 4):
        raise TypeError("%s: expected %s buffer" % (name, kind))
    if writable and mv.readonly:
        raise TypeError("%s: buffer is read-only" % name)
    nbytes = mv.nbytes
    if raw and kind != INT8 and nbytes % 4:
        raise ValueError("%s: size %d bytes is not a multiple of 4" % (name, nbytes))
    if nbytes == 0:
        arr = np.zeros(0, dtype=_DTYPES[kind])
    else:
        arr = np.frombuffer(mv.cast("B"), dtype=_DTYPES[kind])
    return Buf(name, arr, nbytes)


def int_arg(name, value, lo, hi):
    """An int scalar in [lo, hi]; TypeError if not an int, else
    ValueError("<name> out of range")."""
    v = operator.index(value)
    if v < lo or v > hi:
        raise ValueError("%s out of range" % name)
    return v


def check_act(act_min, act_max):
    if act_min > act_max:
        raise ValueError("act_min > act_max")


def check_size(buf, expected):
    if buf.nbytes != expected:
        raise ValueError("%s: size %d bytes, expected %d" % (buf.name, buf.nbytes, expected))


def check_size_multiple(buf, unit, nonzero):
    """Size a multiple of ``unit`` bytes (and not empty when ``nonzero``)."""
    if buf.nbytes % unit or (nonzero and buf.nbytes == 0):
        raise ValueError("%s: size %d bytes, expected a %smultiple of %d"
                         % (buf.name, buf.nbytes, "nonzero " if nonzero else "", unit))


def check_shift_elements(shift):
    a = shift.arr
    if a.size and (int(a.min()) < -31 or int(a.max()) > 30):
        raise ValueError("shift out of range")


def check_mult_elements(mult):
    a = mult.arr
    if a.size and int(a.min()) < 0:
        raise ValueError("mult out of range")
