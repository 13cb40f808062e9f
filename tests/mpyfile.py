"""Reading a native .mpy the way MicroPython's loader does (py/persistentcode.c:
mp_raw_code_load, then mp_native_relocate), written here independently of
tools/mpy_link.py so that tests check the linker's output by a second reading."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ARCH_CODES = {2: "x64", 4: "armv6m", 5: "armv7m", 7: "armv7emsp", 8: "armv7emdp",
              9: "xtensa", 10: "xtensawin"}


def read_uint(data, pos):
    v = 0
    while True:
        b = data[pos]
        pos += 1
        v = v << 7 | (b & 0x7F)
        if not b & 0x80:
            return v, pos


def static_qstr_list():
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import mpy_link  # only for the path of MicroPython's sources
    sys.path.pop(0)
    path = os.path.join(mpy_link.mpy_dir(), "py")
    sys.path.insert(0, path)
    try:
        import makeqstrdata
    finally:
        sys.path.remove(path)
    return list(makeqstrdata.static_qstr_list)


class NativeMpy:
    """The parts of a native .mpy, as the loader reads them."""

    def __init__(self, data):
        if data[0] != ord("M") or data[1] != 6:
            raise ValueError("not a .mpy v6 file")
        self.arch_code = data[2] >> 2
        self.arch = ARCH_CODES.get(self.arch_code)
        self.sub_version = data[2] & 3
        self.small_int_bits = data[3]
        pos = 4
        n_qstr, pos = read_uint(data, pos)
        n_obj, pos = read_uint(data, pos)
        static = None
        self.qstrs = []
        for _ in range(n_qstr):
            v, pos = read_uint(data, pos)
            if v & 1:
                static = static or static_qstr_list()
                self.qstrs.append(static[(v >> 1) - 1])
            else:
                n = v >> 1
                self.qstrs.append(data[pos:pos + n].decode())
                assert data[pos + n] == 0
                pos += n + 1
        self.n_obj = n_obj
        if n_obj:
            raise ValueError("object table not expected in a natmod")
        kind_len, pos = read_uint(data, pos)
        self.kind = (kind_len & 3) + 2  # MP_CODE_BYTECODE + ...; 4 is native viper
        self.has_children = kind_len >> 2 & 1
        n = kind_len >> 3
        self.text = bytearray(data[pos:pos + n])
        pos += n
        self.scope_flags, pos = read_uint(data, pos)
        self.rodata_size = self.bss_size = 0
        if self.scope_flags & 0x20:
            self.rodata_size, pos = read_uint(data, pos)
        if self.scope_flags & 0x40:
            self.bss_size, pos = read_uint(data, pos)
        self.rodata = bytes(data[pos:pos + self.rodata_size])
        pos += self.rodata_size
        self.relocs = []  # (in_rodata, word index, dest kind)
        if self.scope_flags & 0x10:
            cur = None
            while True:
                op = data[pos]
                pos += 1
                if op == 0xFF:
                    break
                if op & 1:
                    addr, pos = read_uint(data, pos)
                    cur = [bool(addr & 1), addr >> 1]
                op >>= 1
                count = 1
                if op <= 5:
                    if op & 1:
                        count, pos = read_uint(data, pos)
                    op >>= 1
                for _ in range(count):
                    self.relocs.append((cur[0], cur[1], op))
                    cur[1] += 1
        self.end = pos


