"""Run an ARM native .mpy without a board: an independent loader plus a CPU emulator.

This module reads a native .mpy the way MicroPython's loader does
(py/persistentcode.c: header, qstr table, the native-viper raw code, rodata/bss, then
the relocation opcodes of mp_native_relocate), places it in the memory of a Cortex-M
emulated by unicorn, and stands in for the MicroPython runtime behind mp_fun_table with
a few Python functions (buffers, ints, strings, exceptions, globals). Code written
here, not shared with tools/mpy_link.py, so the linker's output is checked by a second
reading of the format.
"""
import os
import struct
import sys

from unicorn import Uc, UcError, UC_ARCH_ARM, UC_MODE_THUMB, UC_MODE_MCLASS, UC_HOOK_CODE
from unicorn.arm_const import (UC_ARM_REG_R0, UC_ARM_REG_R1, UC_ARM_REG_R2, UC_ARM_REG_R3,
                               UC_ARM_REG_SP, UC_ARM_REG_LR, UC_ARM_REG_PC)
import unicorn.arm_const as arm_const

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from mpyfile import NativeMpy, static_qstr_list  # noqa: F401  (NativeMpy: used by tests)
CPU_MODEL = {"armv6m": "UC_CPU_ARM_CORTEX_M0", "armv7m": "UC_CPU_ARM_CORTEX_M3",
             "armv7emsp": "UC_CPU_ARM_CORTEX_M4"}

TEXT = 0x20010000
DATA = 0x20040000  # bss, then rodata (as the loader allocates them)
QSTRS = 0x20060000
FUN_TABLE = 0x20070000
TRAPS = 0x20080000  # one `bx lr` per fun_table entry
OBJS = 0x20090000  # fake objects: types, ints, strings, buffers
BUFS = 0x200A0000
STACK_TOP = 0x200F0000
RETURN = 0x200E0000
N_FUN = 96


def relocate(m, text_base, rodata_base, bss_base, qstr_base, fun_table_addr, fun_table):
    """The text and rodata of NativeMpy m after mp_native_relocate at these addresses
    (32-bit targets): each relocation adds a base address to one word."""
    text = bytearray(m.text)
    rodata = bytearray(m.rodata)
    for in_rodata, idx, kind in m.relocs:
        buf = rodata if in_rodata else text
        if kind == 0:
            dest = text_base
        elif kind == 1:
            dest = rodata_base
        elif kind == 2:
            dest = bss_base
        elif kind == 6:
            dest = qstr_base
        elif kind == 7:
            raise AssertionError("obj_table relocation in a natmod without objects")
        elif kind == 8:
            dest = fun_table_addr
        else:
            dest = fun_table[kind - 9]
        (w,) = struct.unpack_from("<I", buf, 4 * idx)
        struct.pack_into("<I", buf, 4 * idx, (w + dest) & 0xFFFFFFFF)
    return text, rodata


class Raised(Exception):
    def __init__(self, etype, msg):
        Exception.__init__(self, etype, msg)
        self.etype = etype
        self.msg = msg


class Machine:
    """A Cortex-M with one natmod loaded and a stand-in runtime."""

    def __init__(self, mpy_bytes):
        self.mod = NativeMpy(mpy_bytes)
        arch = self.mod.arch
        if arch is None:
            raise ValueError("not an ARM natmod")
        self.uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
        model = getattr(arm_const, CPU_MODEL[arch], None)
        if model is not None:
            self.uc.ctl_set_cpu_model(model)
        self.uc.mem_map(0x20000000, 0x00100000)
        m = self.mod
        self.bss = DATA
        self.rodata = DATA + ((m.bss_size + 3) & ~3)
        # runtime objects
        self.objs = {}  # address -> ("type", name) | ("int", v) | ("str", s) | ("buf", ...)
        self.next_obj = OBJS
        self.types = {}
        for name in ("type", "int", "str", "bytes", "bytearray", "array", "NoneType", "bool",
                     "ValueError", "TypeError", "OverflowError", "MemoryError", "OSError",
                     "list", "dict", "Exception", "function", "fun_builtin_0",
                     "fun_builtin_1", "fun_builtin_2", "fun_builtin_3", "fun_builtin_var"):
            self.types[name] = self.new_obj(("type", name), "type")
        self.none = self.new_obj(("none",), "NoneType")
        self.false = self.new_obj(("bool", False), "bool")
        self.true = self.new_obj(("bool", True), "bool")
        self.next_buf = BUFS
        # fun table: constants, traps, type pointers
        table = [0] * N_FUN
        for i in range(N_FUN):
            table[i] = (TRAPS + 2 * i) | 1
        table[0], table[1], table[2] = self.none, self.false, self.true
        for i, name in enumerate(["type", "str", "list", "dict", "fun_builtin_0",
                                  "fun_builtin_1", "fun_builtin_2", "fun_builtin_3",
                                  "fun_builtin_var", "Exception"]):
            table[73 + i] = self.types[name]
        self.uc.mem_write(FUN_TABLE, struct.pack("<%dI" % N_FUN, *table))
        self.uc.mem_write(TRAPS, b"\x70\x47" * N_FUN)  # bx lr
        self.uc.mem_write(RETURN, b"\x00\xbe")  # bkpt (never executed: emu stops first)
        # qstr table: index i -> id 1000 + i (the loader would intern the strings)
        self.qstr_ids = {}
        qt = []
        for i, q in enumerate(m.qstrs):
            qt.append(1000 + i)
            self.qstr_ids[1000 + i] = q
        self.uc.mem_write(QSTRS, struct.pack("<%dH" % len(qt), *qt))
        self.static = None
        text, rodata = relocate(m, TEXT, self.rodata, self.bss, QSTRS, FUN_TABLE, table)
        self.uc.mem_write(TEXT, bytes(text))
        self.uc.mem_write(self.rodata, bytes(rodata))
        self.globals = {}
        self.calls = {}
        self.uc.hook_add(UC_HOOK_CODE, self._trap, begin=TRAPS, end=TRAPS + 2 * N_FUN - 1)
        # the module's fun_bc object: self->context->module.globals
        ctx = self.new_obj(("context",), "dict")
        fun = self.new_obj(("fun_bc",), "function")
        self.uc.mem_write(fun + 4, struct.pack("<I", ctx))
        self.call(TEXT, [fun, 0, 0, 0])  # mpy_init at text offset 0

    # -- objects
    def new_obj(self, value, tname):
        addr = self.next_obj
        self.next_obj += 16
        tptr = self.types.get(tname, 0) if tname != "type" or "type" in self.types else addr
        self.uc.mem_write(addr, struct.pack("<I", tptr))
        self.objs[addr] = value
        return addr

    def qstr_name(self, q):
        if q in self.qstr_ids:
            return self.qstr_ids[q]
        self.static = self.static or static_qstr_list()
        return self.static[q - 1]

    def to_obj(self, v):
        """A Python value as an mp_obj_t: small int, or a fake object."""
        if isinstance(v, bool):
            return self.true if v else self.false
        if isinstance(v, int):
            if -(1 << 30) <= v < (1 << 30):
                return (v << 1 | 1) & 0xFFFFFFFF
            return self.new_obj(("int", v), "int")
        if isinstance(v, tuple) and v[0] == "buf":
            return self.new_buffer(*v[1:])
        raise TypeError(v)

    def new_buffer(self, data, typecode, writable):
        addr = self.next_buf
        self.next_buf += (len(data) + 7) & ~7
        self.uc.mem_write(addr, bytes(data))
        tc = 1 if typecode == "B" and writable else ord(typecode)  # bytearray: BYTEARRAY_TYPECODE
        return self.new_obj(("buf", addr, len(data), tc, writable), "bytearray")

    def int_of(self, o):
        if o & 1:
            v = o >> 1
            return v - (1 << 31) if v & (1 << 30) else v
        val = self.objs.get(o)
        if val and val[0] == "int":
            return val[1]
        if val and val[0] == "bool":
            return int(val[1])
        raise Raised("TypeError", "can't convert to int")

    # -- calls into the module
    def call(self, addr, args):
        uc = self.uc
        regs = [UC_ARM_REG_R0, UC_ARM_REG_R1, UC_ARM_REG_R2, UC_ARM_REG_R3]
        for r, v in zip(regs, args):
            uc.reg_write(r, v & 0xFFFFFFFF)
        uc.reg_write(UC_ARM_REG_SP, STACK_TOP)
        uc.reg_write(UC_ARM_REG_LR, RETURN | 1)
        self.raised = None
        try:
            uc.emu_start(addr | 1, RETURN, count=50_000_000)
        except UcError as e:
            pc = uc.reg_read(UC_ARM_REG_PC)
            raise AssertionError("CPU fault %s at pc=0x%x (text+0x%x)" % (e, pc, pc - TEXT))
        if self.raised is not None:
            raise self.raised
        if uc.reg_read(UC_ARM_REG_PC) != RETURN:
            raise AssertionError("did not return (instruction limit?)")
        return uc.reg_read(UC_ARM_REG_R0)

    def function(self, name):
        """Python callable for a module global defined with MP_DEFINE_CONST_FUN_OBJ_*."""
        obj = self.globals[name]
        if obj not in self.fun_objs:
            self.fun_objs[obj] = obj
        return obj

    fun_objs = {}

    def invoke(self, name, args):
        """Call module function `name` with Python args; returns (result, buffers)."""
        obj = self.globals[name]
        objs = [self.to_obj(a) for a in args]
        head = self.uc.mem_read(obj, 12)
        # mp_obj_fun_builtin_fixed_t {base, fun} or _var_t {base, sig, fun}, told apart
        # by the type the module put in base (an mp_fun_table entry)
        base, var_sig, var_fun = struct.unpack("<3I", head)[0:3]
        if base == self.types["fun_builtin_var"]:
            argv = BUFS + 0x40000 - 64
            self.uc.mem_write(argv, struct.pack("<%dI" % len(objs), *objs))
            res = self.call(var_fun, [len(objs), argv])
        else:
            fn = struct.unpack("<I", head[4:8])[0]
            res = self.call(fn, objs)
        return self.py_value(res), objs

    def py_value(self, o):
        if o == self.none:
            return None
        if o & 1:
            return self.int_of(o)
        val = self.objs.get(o)
        if val and val[0] == "int":
            return val[1]
        return ("obj", o)

    def buffer_bytes(self, o):
        val = self.objs[o]
        return bytes(self.uc.mem_read(val[1], val[2]))

    # -- the stand-in runtime
    def _trap(self, uc, address, size, user):
        idx = (address - TRAPS) // 2
        a = [uc.reg_read(r) for r in (UC_ARM_REG_R0, UC_ARM_REG_R1, UC_ARM_REG_R2, UC_ARM_REG_R3)]
        self.calls[idx] = self.calls.get(idx, 0) + 1
        try:
            r = self._runtime(idx, a)
        except Raised as e:
            self.raised = e
            uc.emu_stop()
            return
        if r is not None:
            uc.reg_write(UC_ARM_REG_R0, r & 0xFFFFFFFF)

    def _cstr(self, addr):
        out = bytearray()
        while True:
            b = self.uc.mem_read(addr + len(out), 1)[0]
            if b == 0:
                return out.decode()
            out.append(b)

    def _runtime(self, idx, a):
        if idx == 3:  # native_from_obj(obj, type)
            return self.int_of(a[0]) & 0xFFFFFFFF
        if idx == 4:  # native_to_obj(val, type)
            v = a[0]
            if a[1] == 2:  # MP_NATIVE_TYPE_INT
                v = v - (1 << 32) if v & 0x80000000 else v
            elif a[1] != 3:
                raise AssertionError("native_to_obj type %d" % a[1])
            return self.to_obj(v)
        if idx == 5:  # swap_globals
            return 0
        if idx == 7:  # load_global(qstr)
            name = self.qstr_name(a[0])
            if name not in self.types:
                raise AssertionError("load_global %s" % name)
            return self.types[name]
        if idx == 13:  # store_global(qstr, obj)
            self.globals[self.qstr_name(a[0])] = a[1]
            return None
        if idx == 18:  # binary_op(op, lhs, rhs): comparisons only
            x, y = self.int_of(a[1]), self.int_of(a[2])
            res = {0: x < y, 1: x > y, 2: x == y}[a[0]]
            return self.true if res else self.false
        if idx == 27:  # call_function_n_kw(fun, n_args_kw, args): exception constructors
            val = self.objs.get(a[0])
            assert val and val[0] == "type", val
            n = a[1] & 0xFF
            args = struct.unpack("<%dI" % n, self.uc.mem_read(a[2], 4 * n))
            msg = self.objs[args[0]][1] if n else ""
            return self.new_obj(("exc", val[1], msg), val[1])
        if idx == 34:  # raise(obj)
            val = self.objs[a[0]]
            raise Raised(val[1], val[2])
        if idx == 55:  # raise_msg(type, const char *msg)
            raise Raised(self.objs[a[0]][1], self._cstr(a[1]))
        if idx == 57:  # obj_new_str(data, len)
            return self.new_obj(("str", bytes(self.uc.mem_read(a[0], a[1])).decode()), "str")
        if idx == 65:  # get_buffer(obj, bufinfo, flags)
            val = self.objs.get(a[0]) if not a[0] & 1 else None
            if not val or val[0] != "buf":
                if a[2] & 4:
                    raise Raised("TypeError", "object with buffer protocol required")
                return 0
            if a[2] & 2 and not val[4]:
                return 0
            self.uc.mem_write(a[1], struct.pack("<IIi", val[1], val[2], val[3]))
            return 1
        raise AssertionError("mp_fun_table entry %d is not emulated" % idx)
