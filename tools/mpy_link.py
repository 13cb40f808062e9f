#!/usr/bin/env python3
"""tinyadapt's natmod linker: ELF relocatable objects in, a native .mpy out.

MicroPython's own `tools/mpy_ld.py` is on no package registry, so the project links
its dynamic native modules itself. The command line follows mpy_ld.py's so that
either tool can be used by the same Makefile:

    mpy_link.py --arch ARCH --preprocess -o CONFIG_H SRC.c ...
    mpy_link.py --arch ARCH --qstrs CONFIG_H [-l LIB.a ...] -o OUT.mpy OBJ.o ...

Output format (MicroPython .mpy version 6.3, see docs/linker.md for the details):
header, qstr table (the file name, then the module's own qstrs), one raw-code of kind
"native viper" holding the linked text, its scope flags, the sizes of its rodata and
bss, the rodata bytes, and a list of load-time relocations that the loader applies
(`mp_native_relocate` in py/persistentcode.c).

Anything that cannot be linked (an unknown relocation, an undefined or duplicate
symbol, a static variable in bss reached PC-relatively, a branch out of range) is a
LinkError naming the symbol and the object file; no .mpy is written in that case.
"""

import argparse
import io
import os
import re
import struct
import sys

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection
from elftools.elf.relocation import RelocationSection

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MPY_VERSION = 6
MPY_SUB_VERSION = 3
MP_SMALL_INT_BITS = 31  # loader accepts any value <= the port's own
MP_CODE_BYTECODE = 2
MP_CODE_NATIVE_VIPER = 4
SCOPE_VIPERRELOC = 0x10
SCOPE_VIPERRODATA = 0x20
SCOPE_VIPERBSS = 0x40

# Load-time relocation destinations understood by mp_native_relocate().
KIND_TEXT, KIND_RODATA, KIND_BSS = 0, 1, 2
KIND_QSTR_TABLE, KIND_OBJ_TABLE, KIND_FUN_TABLE = 6, 7, 8
KIND_FUN_ENTRY0 = 9  # 9 + i: the value of mp_fun_table entry i

# Objects that a natmod reaches as entries of mp_fun_table (index in mp_fun_table_t,
# py/nativeglue.h of MicroPython 1.2x: the type/stream block starts at 73).
FUN_TABLE_OBJECTS = {
    name: 73 + i
    for i, name in enumerate([
        "mp_type_type", "mp_type_str", "mp_type_list", "mp_type_dict",
        "mp_type_fun_builtin_0", "mp_type_fun_builtin_1", "mp_type_fun_builtin_2",
        "mp_type_fun_builtin_3", "mp_type_fun_builtin_var", "mp_type_Exception",
        "mp_stream_read_obj", "mp_stream_readinto_obj",
        "mp_stream_unbuffered_readline_obj", "mp_stream_write_obj",
    ])
}
SPECIAL_EXTERNS = {
    "mp_fun_table": ("fun_table",),
    "mp_native_qstr_table": ("qstr_table",),
    "mp_native_obj_table": ("obj_table",),
}


class LinkError(Exception):
    pass


# ---------------------------------------------------------------------------------
# Architectures


def _thumb_bl_encode(offset, link):
    """Thumb-2 BL (link) or B.W (T4) with a byte offset from PC (= place + 4)."""
    if offset & 1 or not -(1 << 24) <= offset < (1 << 24):
        raise ValueError("branch offset out of range: %d" % offset)
    v = offset & 0x1FFFFFF
    s = v >> 24 & 1
    i1 = v >> 23 & 1
    i2 = v >> 22 & 1
    j1 = (~(i1 ^ s)) & 1
    j2 = (~(i2 ^ s)) & 1
    hi = 0xF000 | s << 10 | (v >> 12 & 0x3FF)
    lo = (0xD000 if link else 0x9000) | j1 << 13 | j2 << 11 | (v >> 1 & 0x7FF)
    return hi, lo


def _thumb_bl_decode(hi, lo):
    s = hi >> 10 & 1
    j1 = lo >> 13 & 1
    j2 = lo >> 11 & 1
    i1 = (~(j1 ^ s)) & 1
    i2 = (~(j2 ^ s)) & 1
    v = s << 24 | i1 << 23 | i2 << 22 | (hi & 0x3FF) << 12 | (lo & 0x7FF) << 1
    return v - (1 << 25) if s else v


def stub_x86(entry):
    # jmp rel32, PC = 5
    return struct.pack("<Bi", 0xE9, entry - 5)


def stub_thumb1(entry):
    # ARMv6-M has no B.W: push {r4, lr}; bl entry; pop {r4, pc}; nop.
    # r4 is callee-saved, so saving it keeps the stack 8-byte aligned and r0..r3
    # (the arguments) and r0 on return (the result) untouched.
    hi, lo = _thumb_bl_encode((entry & ~1) - (2 + 4), link=True)
    return struct.pack("<HHHH", 0xB510, hi, lo, 0xBD10)


def stub_thumb2(entry):
    hi, lo = _thumb_bl_encode((entry & ~1) - 4, link=False)  # b.w entry
    return struct.pack("<HH", hi, lo)


def stub_xtensa(entry):
    # j entry: 18-bit signed offset from PC + 4
    off = entry - 4
    if not -(1 << 17) <= off < (1 << 17):
        raise LinkError("entry point out of range of the start jump")
    op = (off & 0x3FFFF) << 6 | 6
    return struct.pack("<BH", op & 0xFF, op >> 8)


class Arch:
    def __init__(self, name, machine, code, word, stub, separate_rodata=False, stub_size=None):
        self.name = name
        self.machine = machine
        self.code = code
        self.word = word
        self.stub = stub
        self.stub_size = len(stub(64)) if stub_size is None else stub_size
        self.separate_rodata = separate_rodata


ARCHS = {
    "x64": Arch("x64", "EM_X86_64", 2, 8, stub_x86),
    "armv6m": Arch("armv6m", "EM_ARM", 4, 4, stub_thumb1),
    "armv7m": Arch("armv7m", "EM_ARM", 5, 4, stub_thumb2),
    "armv7emsp": Arch("armv7emsp", "EM_ARM", 7, 4, stub_thumb2),
    "armv7emdp": Arch("armv7emdp", "EM_ARM", 8, 4, stub_thumb2),
    "xtensa": Arch("xtensa", "EM_XTENSA", 9, 4, stub_xtensa),
    # ESP32 executes from IRAM, which faults on byte reads: its rodata lives apart.
    "xtensawin": Arch("xtensawin", "EM_XTENSA", 10, 4, stub_xtensa, separate_rodata=True),
}

# Relocation numbers (from the ELF psABI documents of each architecture).
R_X86_64 = dict(NONE=0, _64=1, PC32=2, GOT32=3, PLT32=4, COPY=5, GLOB_DAT=6, JUMP_SLOT=7,
                RELATIVE=8, GOTPCREL=9, _32=10, _32S=11, _16=12, PC16=13, _8=14, PC8=15,
                DTPMOD64=16, DTPOFF64=17, TPOFF64=18, TLSGD=19, TLSLD=20, DTPOFF32=21,
                GOTTPOFF=22, TPOFF32=23, PC64=24, GOTOFF64=25, GOTPC32=26, GOT64=27,
                GOTPCREL64=28, GOTPC64=29, GOTPLT64=30, PLTOFF64=31, SIZE32=32, SIZE64=33,
                GOTPC32_TLSDESC=34, TLSDESC_CALL=35, TLSDESC=36, IRELATIVE=37,
                GOTPCRELX=41, REX_GOTPCRELX=42)
R_ARM = dict(NONE=0, ABS32=2, REL32=3, THM_CALL=10, GOTOFF32=24, BASE_PREL=25,
             GOT_BREL=26, THM_JUMP24=30, TARGET1=38, V4BX=40, PREL31=42,
             THM_JUMP19=51, THM_JUMP11=102, THM_JUMP8=103)
R_XTENSA = dict(NONE=0, _32=1, RTLD=2, PLT=6, OP0=8, OP1=9, OP2=10, ASM_EXPAND=11,
                ASM_SIMPLIFY=12, DIFF8=17, DIFF16=18, DIFF32=19, SLOT0_OP=20,
                PDIFF8=57, PDIFF16=58, PDIFF32=59, NDIFF8=60, NDIFF16=61, NDIFF32=62)


def reloc_name(arch, rtype):
    table = {"EM_X86_64": R_X86_64, "EM_ARM": R_ARM, "EM_XTENSA": R_XTENSA}[arch.machine]
    for k, v in table.items():
        if v == rtype:
            return "R_%s_%s" % ({"EM_X86_64": "X86_64", "EM_ARM": "ARM",
                                 "EM_XTENSA": "XTENSA"}[arch.machine], k.lstrip("_"))
    return "relocation type %d" % rtype


# ---------------------------------------------------------------------------------
# Input objects


IGNORED_SECTIONS = (".comment", ".note", ".ARM.attributes", ".ARM.exidx", ".ARM.extab",
                    ".eh_frame", ".debug", ".stack_sizes", ".group", ".xt.prop",
                    ".xt.lit", ".xtensa.info", ".gnu")


def classify_section(name):
    """Which part of the image an allocated section goes to."""
    if name.startswith(".literal"):
        return "literal"
    if name.startswith(".text"):
        return "text"
    if name.startswith((".rodata", ".data.rel.ro", ".srodata")):
        return "rodata"
    if name.startswith((".data", ".sdata")):
        return "data"
    if name.startswith((".bss", ".sbss")):
        return "bss"
    return None


class Section:
    def __init__(self, obj, name, kind, data, align, size=None):
        self.obj = obj
        self.name = name
        self.kind = kind  # text, rodata, data, bss, literal, (synthetic: got, lit)
        self.data = bytearray(data)
        self.align = max(align, 1)
        self.size = len(self.data) if size is None else size
        self.relocs = []
        self.region = None  # "text", "rodata" or "bss" once placed
        self.addr = None

    def __repr__(self):
        return "<%s:%s>" % (self.obj.name if self.obj else "", self.name)


class Symbol:
    def __init__(self, obj, name, bind, stype, shndx, value, size):
        self.obj = obj
        self.name = name
        self.bind = bind
        self.type = stype
        self.shndx = shndx
        self.value = value
        self.size = size
        self.section = None
        self.resolved = None  # for undefined symbols: the defining Symbol

    def target(self):
        """The definition this symbol stands for (itself when defined here)."""
        return self.resolved if self.resolved is not None else self


class Reloc:
    def __init__(self, offset, rtype, sym, addend, rela):
        self.offset = offset
        self.type = rtype
        self.sym = sym
        self.addend = addend
        self.rela = rela


class ObjFile:
    def __init__(self, name, data, arch):
        self.name = name
        self.sections = []
        self.symbols = []
        elf = ELFFile(io.BytesIO(data))
        if elf["e_machine"] != arch.machine:
            raise LinkError("%s: is %s, not %s (wrong compiler for --arch %s?)"
                            % (name, elf["e_machine"], arch.machine, arch.name))
        if elf["e_type"] != "ET_REL":
            raise LinkError("%s: not a relocatable object file" % name)
        by_index = {}
        for idx, sec in enumerate(elf.iter_sections()):
            hdr = sec.header
            if hdr.sh_type not in ("SHT_PROGBITS", "SHT_NOBITS", "SHT_INIT_ARRAY",
                                   "SHT_FINI_ARRAY"):
                continue
            if not hdr.sh_flags & 0x2:  # SHF_ALLOC
                continue
            if hdr.sh_size == 0 or sec.name.startswith(IGNORED_SECTIONS):
                continue
            kind = classify_section(sec.name)
            if kind is None:
                raise LinkError("%s: section %s is not supported in a native module"
                                % (name, sec.name))
            if kind == "bss" or hdr.sh_type == "SHT_NOBITS":
                s = Section(self, sec.name, "bss", b"", hdr.sh_addralign, hdr.sh_size)
            else:
                s = Section(self, sec.name, kind, sec.data(), hdr.sh_addralign)
            by_index[idx] = s
            self.sections.append(s)
        symtab = elf.get_section_by_name(".symtab")
        if not isinstance(symtab, SymbolTableSection):
            raise LinkError("%s: no symbol table" % name)
        common = []
        for es in symtab.iter_symbols():
            sym = Symbol(self, es.name, es["st_info"]["bind"], es["st_info"]["type"],
                         es["st_shndx"], es["st_value"], es["st_size"])
            if isinstance(sym.shndx, int) and sym.shndx in by_index:
                sym.section = by_index[sym.shndx]
            elif sym.shndx == "SHN_COMMON":
                common.append(sym)
            self.symbols.append(sym)
        for sym in common:
            # A tentative definition (-fcommon): give it its own zeroed bss section.
            sec = Section(self, ".bss.common." + sym.name, "bss", b"", sym.value, sym.size)
            self.sections.append(sec)
            sym.section, sym.value, sym.shndx = sec, 0, "COMMON"
        for sec in elf.iter_sections():
            if not isinstance(sec, RelocationSection):
                continue
            target = by_index.get(sec.header.sh_info)
            if target is None:
                continue
            rela = sec.header.sh_type == "SHT_RELA"
            for r in sec.iter_relocations():
                sym = self.symbols[r["r_info_sym"]]
                target.relocs.append(Reloc(r["r_offset"], r["r_info_type"], sym,
                                           r["r_addend"] if rela else None, rela))


def read_archive(path):
    """Members of a System V / GNU `ar` archive as (name, bytes)."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(b"!<arch>\n"):
        raise LinkError("%s: not an ar archive" % path)
    pos, longnames, members = 8, b"", []
    while pos + 60 <= len(data):
        hdr = data[pos:pos + 60]
        name = hdr[:16].decode("ascii").rstrip()
        size = int(hdr[48:58].decode("ascii").strip())
        body = data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)
        if name == "//":
            longnames = body
            continue
        if name in ("/", "/SYM64/", "__.SYMDEF", "__.SYMDEF SORTED"):
            continue
        if name.startswith("/") and name[1:].isdigit():
            off = int(name[1:])
            end = longnames.find(b"\n", off)
            name = longnames[off:end].decode("ascii")
        name = name.rstrip("/")
        members.append((name, body))
    return members


# ---------------------------------------------------------------------------------
# Linking


class Image:
    """The output: text (with GOT), optional separate rodata, bss, load-time relocs."""

    def __init__(self, arch):
        self.arch = arch
        self.text = bytearray()
        self.rodata = bytearray()
        self.bss_size = 0
        self.load_relocs = []  # (base region "text"/"rodata", byte offset, kind)

    def buf(self, region):
        return self.text if region == "text" else self.rodata


def _align(n, a):
    return (n + a - 1) // a * a


class Linker:
    def __init__(self, arch_name, qstrs=(), verbose=0):
        if arch_name not in ARCHS:
            raise LinkError("unknown --arch %s (known: %s)" % (arch_name, ", ".join(ARCHS)))
        self.arch = ARCHS[arch_name]
        self.qstrs = list(qstrs)
        self.verbose = verbose
        self.objs = []
        self.defined = {}  # global name -> Symbol

    def log(self, level, msg):
        if self.verbose >= level:
            print(msg)

    # -- input
    def add_object(self, name, data):
        obj = ObjFile(name, data, self.arch)
        for sym in obj.symbols:
            if sym.section is None or sym.bind not in ("STB_GLOBAL", "STB_WEAK") or not sym.name:
                continue
            prev = self.defined.get(sym.name)
            if prev is not None:
                if sym.bind == "STB_WEAK":
                    continue
                if prev.bind != "STB_WEAK":
                    raise LinkError("duplicate symbol %s: defined in %s and in %s"
                                    % (sym.name, prev.obj.name, obj.name))
            self.defined[sym.name] = sym
        self.objs.append(obj)
        return obj

    def undefined(self):
        out = []
        for obj in self.objs:
            for sym in obj.symbols:
                if (sym.shndx == "SHN_UNDEF" and sym.name and sym.name not in self.defined
                        and sym.name not in SPECIAL_EXTERNS and sym.name not in FUN_TABLE_OBJECTS
                        and sym.name != "_GLOBAL_OFFSET_TABLE_"):
                    out.append(sym)
        return out

    def add_libraries(self, paths):
        """Pull archive members that define still-undefined symbols, until closure."""
        members = []
        for path in paths:
            for mname, data in read_archive(path):
                members.append(("%s(%s)" % (os.path.basename(path), mname), data, None))
        loaded = set()
        while True:
            wanted = {s.name for s in self.undefined()}
            if not wanted:
                return
            progress = False
            for i, (mname, data, defs) in enumerate(members):
                if mname in loaded:
                    continue
                if defs is None:
                    try:
                        probe = ObjFile(mname, data, self.arch)
                    except LinkError:
                        defs = set()
                    else:
                        defs = {s.name for s in probe.symbols
                                if s.section is not None and s.bind in ("STB_GLOBAL", "STB_WEAK")}
                    members[i] = (mname, data, defs)
                if defs & wanted:
                    self.log(2, "using %s for %s" % (mname, ", ".join(sorted(defs & wanted))))
                    self.add_object(mname, data)
                    loaded.add(mname)
                    progress = True
                    wanted = {s.name for s in self.undefined()}
                    if not wanted:
                        return
            if not progress:
                return

    # -- symbol resolution
    def resolve(self):
        errors = []
        for sym in self.undefined():
            errors.append("undefined symbol %s (referenced from %s)" % (sym.name, sym.obj.name))
        if errors:
            raise LinkError("\n".join(errors))
        for obj in self.objs:
            for sym in obj.symbols:
                if sym.shndx == "SHN_UNDEF" and sym.name in self.defined:
                    sym.resolved = self.defined[sym.name]
                elif sym.section is not None and sym.bind in ("STB_GLOBAL", "STB_WEAK"):
                    # A weak definition overridden by a strong one elsewhere.
                    d = self.defined.get(sym.name)
                    if d is not None and d is not sym:
                        sym.resolved = d

    def where(self, sym, addend=0):
        """Location of sym+addend as (base, offset[, fun_table index]): base is 'text',
        'rodata' or 'bss', or an external the loader knows ('fun_table', 'qstr_table',
        'obj_table', 'fun_entry'). The offset is what the word holds before the loader
        adds the base's run-time address."""
        t = sym.target()
        if t.name in SPECIAL_EXTERNS and t.section is None:
            return (SPECIAL_EXTERNS[t.name][0], addend)
        if t.name in FUN_TABLE_OBJECTS and t.section is None:
            return ("fun_entry", addend, FUN_TABLE_OBJECTS[t.name])
        if t.section is None:
            raise LinkError("symbol %s (from %s) has no definition" % (t.name, sym.obj.name))
        sec = t.section
        return (sec.region, sec.addr + t.value + addend)

    # -- layout
    def layout(self):
        arch = self.arch
        img = self.image = Image(arch)
        texts, rodatas, bsses, literals = [], [], [], []
        for obj in self.objs:
            for sec in obj.sections:
                if sec.kind == "text":
                    texts.append(sec)
                elif sec.kind in ("rodata", "data"):
                    rodatas.append(sec)
                elif sec.kind == "bss":
                    bsses.append(sec)
                elif sec.kind == "literal":
                    literals.append(sec)
        self.literals = literals
        self.build_got()
        img.text.extend(b"\x00" * arch.stub_size)

        def place(sec, region, buf):
            sec.region = region
            sec.addr = _align(len(buf), sec.align)
            buf.extend(b"\x00" * (sec.addr - len(buf)))
            buf.extend(sec.data)

        if arch.machine == "EM_XTENSA":
            # l32r reaches only backwards: GOT and literal pool go before the code.
            place(self.got, "text", img.text)
            place(self.lit, "text", img.text)
        for sec in texts:
            place(sec, "text", img.text)
        for sec in rodatas:
            if arch.separate_rodata:
                place(sec, "rodata", img.rodata)
            else:
                place(sec, "text", img.text)
        if arch.machine != "EM_XTENSA":
            place(self.got, "text", img.text)
        bss = 0
        for sec in bsses:
            sec.region = "bss"
            sec.addr = _align(bss, sec.align)
            bss = sec.addr + sec.size
        img.bss_size = bss
        self.log(2, "text %d bytes, rodata %d bytes, bss %d bytes, GOT %d entries"
                 % (len(img.text), len(img.rodata), bss, len(self.got_keys)))

    def build_got(self):
        """One GOT word per distinct target reached through the GOT."""
        arch = self.arch
        got_types = {
            "EM_X86_64": (R_X86_64["GOTPCREL"], R_X86_64["GOTPCRELX"], R_X86_64["REX_GOTPCRELX"]),
            "EM_ARM": (R_ARM["GOT_BREL"],),
            "EM_XTENSA": (),
        }[arch.machine]
        self.got_keys = []  # (symbol, addend) with a representative symbol
        self.got_index = {}  # key -> index
        self.got_of_sym = {}

        def add(sym, addend=0):
            t = sym.target()
            key = (id(t), addend) if t.section is None else (id(t.section), t.value + addend)
            if key not in self.got_index:
                self.got_index[key] = len(self.got_keys)
                self.got_keys.append((sym, addend))
            return self.got_index[key]

        for obj in self.objs:
            for sec in obj.sections:
                for r in sec.relocs:
                    if r.type in got_types:
                        self.got_of_sym[(id(r.sym.target()), 0)] = add(r.sym)
        # Xtensa: words of the literal pools that hold addresses become GOT entries,
        # the others are constants deduplicated into one literal table.
        self.xt_lit = {}  # (literal section id, offset) -> ("got", idx) | ("lit", idx)
        lit_values = []
        for sec in getattr(self, "literals", []) if arch.machine == "EM_XTENSA" else []:
            if len(sec.data) % 4:
                raise LinkError("%s: literal section %s size is not a multiple of 4"
                                % (sec.obj.name, sec.name))
            addr_words = {}
            for r in sec.relocs:
                if r.type != R_XTENSA["_32"] and r.type != R_XTENSA["PLT"]:
                    raise LinkError("%s: %s in literal section %s against %s"
                                    % (sec.obj.name, reloc_name(arch, r.type), sec.name,
                                       r.sym.name or "a section"))
                if r.offset % 4:
                    raise LinkError("%s: unaligned literal at %s+0x%x" % (sec.obj.name, sec.name, r.offset))
                existing = struct.unpack_from("<I", sec.data, r.offset)[0]
                addr_words[r.offset] = add(r.sym, (r.addend or 0) + existing)
            for off in range(0, len(sec.data), 4):
                if off in addr_words:
                    self.xt_lit[(id(sec), off)] = ("got", addr_words[off])
                else:
                    v = struct.unpack_from("<I", sec.data, off)[0]
                    if v not in lit_values:
                        lit_values.append(v)
                    self.xt_lit[(id(sec), off)] = ("lit", lit_values.index(v))
        self.got = Section(None, "GOT", "got", bytes(arch.word * len(self.got_keys)), arch.word)
        self.lit = Section(None, "LIT", "lit", b"".join(struct.pack("<I", v) for v in lit_values), 4)

    def got_addr(self, sym, addend=0):
        t = sym.target()
        key = (id(t), addend) if t.section is None else (id(t.section), t.value + addend)
        return self.got.addr + self.got_index[key] * self.arch.word

    # -- load-time relocations
    def load_reloc(self, region, offset, dest):
        """Ask the loader to add the run-time address of dest to the word at offset."""
        arch, img = self.arch, self.image
        if offset % arch.word:
            raise LinkError("absolute address at unaligned offset 0x%x in %s" % (offset, region))
        kind = dest[0]
        if kind == "text":
            k = KIND_TEXT
        elif kind == "rodata":
            k = KIND_RODATA
        elif kind == "bss":
            k = KIND_BSS
        elif kind == "fun_table":
            k = KIND_FUN_TABLE
        elif kind == "qstr_table":
            k = KIND_QSTR_TABLE
        elif kind == "obj_table":
            k = KIND_OBJ_TABLE
        elif kind == "fun_entry":
            k = KIND_FUN_ENTRY0 + dest[2]
            if k > 127:
                raise LinkError("mp_fun_table entry %d cannot be encoded" % dest[2])
        else:
            raise LinkError("cannot relocate to %r" % (dest,))
        img.load_relocs.append((region, offset, k))

    def put_word(self, region, offset, value):
        fmt = "<Q" if self.arch.word == 8 else "<I"
        struct.pack_into(fmt, self.image.buf(region), offset, value & ((1 << 8 * self.arch.word) - 1))

    def fill_got(self):
        for idx, (sym, addend) in enumerate(self.got_keys):
            dest = self.where(sym, addend)
            off = self.got.addr + idx * self.arch.word
            self.put_word("text", off, dest[1])
            self.load_reloc("text", off, dest)

    # -- relocation
    def relocate(self):
        self.fill_got()
        for obj in self.objs:
            for sec in obj.sections:
                if sec.kind in ("bss", "literal"):
                    if sec.kind == "bss" and sec.relocs:
                        raise LinkError("%s: relocations in bss section %s" % (obj.name, sec.name))
                    continue
                for r in sec.relocs:
                    try:
                        self.apply(sec, r)
                    except LinkError:
                        raise
                    except (ValueError, struct.error) as e:
                        raise LinkError("%s: %s against %s in %s: %s"
                                        % (obj.name, reloc_name(self.arch, r.type),
                                           self.symname(r.sym, r), sec.name, e))

    def symname(self, sym, r=None):
        """A name for the error message. A reference to a file-local variable is made
        against its section symbol (".bss" + offset): name the variable it lands in."""
        if sym.name and sym.type != "STT_SECTION":
            return sym.name
        if sym.section is None:
            return sym.name or "<anonymous>"
        off = sym.value + ((r.addend or 0) if r is not None else 0)
        if r is not None and self.arch.machine == "EM_X86_64" and r.type in (
                R_X86_64["PC32"], R_X86_64["PLT32"]):
            off += 4  # the addend of a PC-relative field counts from its end
        best = None
        for s in sym.obj.symbols:
            if s.section is sym.section and s.name and s.type in ("STT_OBJECT", "STT_FUNC",
                                                                   "STT_NOTYPE"):
                if s.value <= off < s.value + max(s.size, 1):
                    return "%s (%s+0x%x)" % (s.name, sym.section.name, off)
                if s.value <= off and (best is None or s.value > best.value):
                    best = s
        if best is not None:
            return "%s+0x%x (%s+0x%x)" % (best.name, off - best.value, sym.section.name, off)
        return "%s+0x%x" % (sym.section.name, off)

    def fail(self, sec, r, why):
        raise LinkError("%s: %s against %s in %s+0x%x: %s"
                        % (sec.obj.name, reloc_name(self.arch, r.type), self.symname(r.sym, r),
                           sec.name, r.offset, why))

    def pcrel_target(self, sec, r, addend=0):
        """Address of sym+addend for a reference fixed at link time (same region)."""
        dest = self.where(r.sym, addend)
        if dest[0] != sec.region:
            if dest[0] == "bss":
                why = ("bss reached PC-relatively: a static variable in bss cannot be "
                       "used in a native module (make it non-static, or keep state in "
                       "caller-owned memory)")
            elif dest[0] in ("text", "rodata"):
                why = "reference between text and separate rodata must go through the GOT"
            else:
                why = "external symbol must be reached through the GOT"
            self.fail(sec, r, why)
        return dest[1]

    def apply(self, sec, r):
        m = self.arch.machine
        if m == "EM_X86_64":
            self.apply_x64(sec, r)
        elif m == "EM_ARM":
            self.apply_arm(sec, r)
        else:
            self.apply_xtensa(sec, r)

    def apply_x64(self, sec, r):
        buf = self.image.buf(sec.region)
        P = sec.addr + r.offset
        t = r.type
        A = r.addend
        if t == R_X86_64["NONE"]:
            return
        if t in (R_X86_64["PC32"], R_X86_64["PLT32"]):
            v = self.pcrel_target(sec, r) + A - P
        elif t in (R_X86_64["GOTPCREL"], R_X86_64["GOTPCRELX"], R_X86_64["REX_GOTPCRELX"]):
            v = self.got_addr(r.sym) + A - P
        elif t == R_X86_64["_64"]:
            dest = self.where(r.sym, A)
            struct.pack_into("<Q", buf, P, dest[1])
            self.load_reloc(sec.region, P, dest)
            return
        elif t in (R_X86_64["_32"], R_X86_64["_32S"]):
            self.fail(sec, r, "absolute 32-bit address: compile with -fpic")
        else:
            self.fail(sec, r, "unsupported relocation")
        if not -(1 << 31) <= v < (1 << 31):
            self.fail(sec, r, "displacement out of 32-bit range")
        struct.pack_into("<i", buf, P, v)

    def apply_arm(self, sec, r):
        buf = self.image.buf(sec.region)
        P = sec.addr + r.offset
        t = r.type
        if t in (R_ARM["NONE"], R_ARM["V4BX"]):
            return
        if t in (R_ARM["THM_CALL"], R_ARM["THM_JUMP24"]):
            hi, lo = struct.unpack_from("<HH", buf, P)
            A = _thumb_bl_decode(hi, lo) if r.addend is None else r.addend
            # A Thumb function's symbol value has bit 0 set; a branch offset does not.
            v = (self.pcrel_target(sec, r) + A - P) & ~1
            if not -(1 << 24) <= v < (1 << 24):
                self.fail(sec, r, "branch out of range")
            link = t == R_ARM["THM_CALL"] and (lo & 0x1000)
            if t == R_ARM["THM_CALL"] and not lo & 0x1000:
                self.fail(sec, r, "BLX to ARM code is not supported (Thumb only)")
            hi2, lo2 = _thumb_bl_encode(v, link=bool(link))
            struct.pack_into("<HH", buf, P, hi2, lo2)
            return
        if t == R_ARM["THM_JUMP19"]:
            hi, lo = struct.unpack_from("<HH", buf, P)
            s, j1, j2 = hi >> 10 & 1, lo >> 13 & 1, lo >> 11 & 1
            A = (s << 20 | j2 << 19 | j1 << 18 | (hi & 0x3F) << 12 | (lo & 0x7FF) << 1)
            A = A - (1 << 21) if s else A
            if r.addend is not None:
                A = r.addend
            v = (self.pcrel_target(sec, r) + A - P) & ~1
            if not -(1 << 20) <= v < (1 << 20):
                self.fail(sec, r, "conditional branch out of range")
            v &= 0x1FFFFF
            hi = (hi & 0xFBC0) | (v >> 20 & 1) << 10 | (v >> 12 & 0x3F)
            lo = (lo & 0xD000) | (v >> 18 & 1) << 13 | (v >> 19 & 1) << 11 | (v >> 1 & 0x7FF)
            struct.pack_into("<HH", buf, P, hi, lo)
            return
        if t in (R_ARM["THM_JUMP11"], R_ARM["THM_JUMP8"]):
            (ins,) = struct.unpack_from("<H", buf, P)
            bits = 11 if t == R_ARM["THM_JUMP11"] else 8
            mask = (1 << bits) - 1
            A = (ins & mask) << 1
            if A & (1 << bits):
                A -= 1 << (bits + 1)
            if r.addend is not None:
                A = r.addend
            v = (self.pcrel_target(sec, r) + A - P) & ~1
            if not -(1 << bits) <= v < (1 << bits):
                self.fail(sec, r, "short branch out of range")
            struct.pack_into("<H", buf, P, (ins & ~mask & 0xFFFF) | (v >> 1 & mask))
            return
        # The remaining ARM relocations patch a 32-bit word; REL: addend in place.
        (word,) = struct.unpack_from("<i", buf, P)
        A = word if r.addend is None else r.addend
        if t == R_ARM["REL32"]:
            v = self.pcrel_target(sec, r) + A - P
        elif t == R_ARM["BASE_PREL"]:
            if r.sym.name != "_GLOBAL_OFFSET_TABLE_":
                self.fail(sec, r, "R_ARM_BASE_PREL expected against _GLOBAL_OFFSET_TABLE_")
            v = self.got.addr + A - P
        elif t == R_ARM["GOT_BREL"]:
            v = self.got_addr(r.sym) - self.got.addr + A
        elif t == R_ARM["GOTOFF32"]:
            v = self.pcrel_target(sec, r) + A - self.got.addr
        elif t in (R_ARM["ABS32"], R_ARM["TARGET1"]):
            dest = self.where(r.sym, A)
            struct.pack_into("<I", buf, P, dest[1])
            self.load_reloc(sec.region, P, dest)
            return
        else:
            self.fail(sec, r, "unsupported relocation")
        struct.pack_into("<I", buf, P, v & 0xFFFFFFFF)

    def apply_xtensa(self, sec, r):
        buf = self.image.buf(sec.region)
        P = sec.addr + r.offset
        t = r.type
        tsec = r.sym.target().section
        if t in (R_XTENSA["NONE"], R_XTENSA["ASM_EXPAND"], R_XTENSA["ASM_SIMPLIFY"],
                 R_XTENSA["DIFF8"], R_XTENSA["DIFF16"], R_XTENSA["DIFF32"],
                 R_XTENSA["PDIFF8"], R_XTENSA["PDIFF16"], R_XTENSA["PDIFF32"],
                 R_XTENSA["NDIFF8"], R_XTENSA["NDIFF16"], R_XTENSA["NDIFF32"]):
            # Relaxation hints and differences inside one section stay valid when the
            # section moves as a whole.
            if t in (R_XTENSA["NONE"], R_XTENSA["ASM_EXPAND"], R_XTENSA["ASM_SIMPLIFY"]) \
                    or tsec is sec:
                return
            self.fail(sec, r, "difference across sections")
        if t == R_XTENSA["SLOT0_OP"]:
            if tsec is sec:
                return  # branch/call inside the section: already PC-relative
            if tsec is None or tsec.kind != "literal":
                self.fail(sec, r, "instruction operand outside its section is only supported for l32r")
            lit_off = (r.addend or 0) + r.sym.value
            where = self.xt_lit.get((id(tsec), lit_off))
            if where is None:
                self.fail(sec, r, "l32r to a word that is not in the literal pool")
            if where[0] == "got":
                L = self.got.addr + where[1] * 4
            else:
                L = self.lit.addr + where[1] * 4
            ins = buf[P] | buf[P + 1] << 8 | buf[P + 2] << 16
            if ins & 0xF != 1:
                self.fail(sec, r, "not an l32r instruction")
            off = L - ((P + 3) & ~3)
            if off >= 0 or off & 3 or off < -(1 << 18):
                self.fail(sec, r, "literal out of l32r range")
            ins = (ins & 0xFF) | ((off >> 2) & 0xFFFF) << 8
            buf[P:P + 3] = bytes([ins & 0xFF, ins >> 8 & 0xFF, ins >> 16 & 0xFF])
            return
        if t in (R_XTENSA["_32"], R_XTENSA["PLT"]):
            (word,) = struct.unpack_from("<I", buf, P)
            dest = self.where(r.sym, (r.addend or 0) + word)
            struct.pack_into("<I", buf, P, dest[1])
            self.load_reloc(sec.region, P, dest)
            return
        self.fail(sec, r, "unsupported relocation")

    # -- output
    def link(self, entry="mpy_init"):
        self.resolve()
        if entry not in self.defined:
            raise LinkError("entry point %s is not defined in any object" % entry)
        self.layout()
        self.relocate()
        e = self.defined[entry]
        if e.section.region != "text":
            raise LinkError("entry point %s is not in text" % entry)
        stub = self.arch.stub(e.section.addr + e.value)
        assert len(stub) == self.arch.stub_size
        self.image.text[:len(stub)] = stub
        return self.image

    def mpy_bytes(self, filename):
        img, arch = self.image, self.arch
        out = bytearray()
        out += bytes([ord("M"), MPY_VERSION, arch.code << 2 | MPY_SUB_VERSION, MP_SMALL_INT_BITS])
        out += uleb(1 + len(self.qstrs))  # n_qstr: file name, then the module's own
        out += uleb(0)  # n_obj
        for q in [filename] + self.qstrs:
            out += encode_qstr(q)
        out += uleb(len(img.text) << 3 | (MP_CODE_NATIVE_VIPER - MP_CODE_BYTECODE))
        out += img.text
        flags = SCOPE_VIPERRELOC
        if img.rodata:
            flags |= SCOPE_VIPERRODATA
        if img.bss_size:
            flags |= SCOPE_VIPERBSS
        out += uleb(flags)
        if img.rodata:
            out += uleb(len(img.rodata))
        if img.bss_size:
            out += uleb(img.bss_size)
        out += img.rodata
        out += encode_relocs(img.load_relocs, arch.word)
        return bytes(out)

    def write(self, path):
        """Write the .mpy atomically (a crash never leaves half a module behind)."""
        data = self.mpy_bytes(os.path.basename(path))
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        if self.verbose:
            img = self.image
            print("LINK %s: %s, text %d, rodata %d, bss %d, GOT %d, load relocs %d"
                  % (path, self.arch.name, len(img.text), len(img.rodata), img.bss_size,
                     len(self.got_keys), len(img.load_relocs)))


def uleb(v):
    """MicroPython's variable-length unsigned int: big-endian groups of 7 bits."""
    if v < 0:
        raise ValueError(v)
    b = [v & 0x7F]
    v >>= 7
    while v:
        b.append(0x80 | (v & 0x7F))
        v >>= 7
    return bytes(reversed(b))


_STATIC_QSTRS = None


def static_qstrs():
    global _STATIC_QSTRS
    if _STATIC_QSTRS is None:
        path = os.path.join(mpy_dir(), "py")
        sys.path.insert(0, path)
        try:
            import makeqstrdata
        finally:
            sys.path.remove(path)
        _STATIC_QSTRS = list(makeqstrdata.static_qstr_list)
    return _STATIC_QSTRS


def encode_qstr(q):
    sq = static_qstrs()
    if q in sq:
        return uleb((sq.index(q) + 1) << 1 | 1)
    b = q.encode("utf-8")
    return uleb(len(b) << 1) + b + b"\x00"


def encode_relocs(relocs, word):
    """Encode load-time relocations as mp_native_relocate() reads them.

    Each op byte is (op << 1 | has_offset); for text/rodata/bss destinations op is
    (kind << 1 | has_count) and a run of consecutive words shares one op. After an op
    the loader's cursor points just past the words it adjusted, so an op for the next
    word needs no offset.
    """
    out = bytearray()
    items = sorted(relocs, key=lambda x: (x[0] != "text", x[1]))
    cursor = None  # (base, word index) the loader points at
    i = 0
    while i < len(items):
        base, off, kind = items[i]
        idx = off // word
        n = 1
        if kind <= KIND_BSS:
            while (i + n < len(items) and items[i + n][0] == base and items[i + n][2] == kind
                   and items[i + n][1] // word == idx + n):
                n += 1
        need_offset = cursor != (base, idx)
        op = (kind << 1 | (n > 1)) if kind <= KIND_BSS else kind
        out.append(op << 1 | need_offset)
        if need_offset:
            out += uleb(idx << 1 | (1 if base == "rodata" else 0))
        if n > 1:
            out += uleb(n)
        cursor = (base, idx + n)
        i += n
    out.append(0xFF)
    return bytes(out)


# ---------------------------------------------------------------------------------
# Qstr preprocessing


def mpy_dir():
    d = os.environ.get("MPY_DIR")
    if d:
        return d
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import fetch_mpy
    finally:
        sys.path.pop(0)
    return fetch_mpy.mpy_dir()


QSTR_RE = re.compile(r"MP_QSTR_[A-Za-z0-9_]*")


def preprocess(sources, output):
    """Write CONFIG_H: qstr macros for the module (static ones by number)."""
    sq = static_qstrs()
    static_names = ["MP_QSTR_" + qstr_escape(q) for q in sq]
    used = set()
    for src in sources:
        with open(src, encoding="utf-8") as f:
            used.update(QSTR_RE.findall(f.read()))
    own = sorted(used - set(static_names))
    lines = ["/* generated by tools/mpy_link.py --preprocess; do not edit */",
             "#include <stdint.h>",
             "typedef uintptr_t mp_uint_t;",
             "typedef intptr_t mp_int_t;",
             "typedef uintptr_t mp_off_t;"]
    for i, name in enumerate(static_names):
        lines.append("#define %s (%u)" % (name, i + 1))
    for i, name in enumerate(own):
        lines.append("#define %s (mp_native_qstr_table[%d])" % (name, i + 1))
    lines.append("extern const uint16_t mp_native_qstr_table[];")
    lines.append("extern const mp_uint_t mp_native_obj_table[];")
    tmp = output + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, output)


def qstr_escape(q):
    # The same escaping as MicroPython's makeqstrdata (names of non-identifier chars).
    path = os.path.join(mpy_dir(), "py")
    sys.path.insert(0, path)
    try:
        import makeqstrdata
    finally:
        sys.path.remove(path)
    return makeqstrdata.qstr_escape(q)


def read_config_qstrs(path):
    own = []
    with open(path) as f:
        for line in f:
            m = re.match(r"#define MP_QSTR_(\w*) \(mp_native_qstr_table\[(\d+)\]\)", line)
            if m:
                own.append((int(m.group(2)), m.group(1)))
    own.sort()
    if [i for i, _ in own] != list(range(1, len(own) + 1)):
        raise LinkError("%s: qstr table indices are not 1..n" % path)
    return [name for _, name in own]


# ---------------------------------------------------------------------------------
# Command line


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Link ELF object files into a MicroPython native module (.mpy), "
                    "or (--preprocess) generate the module's qstr config header. "
                    "Command line compatible with MicroPython's tools/mpy_ld.py.")
    ap.add_argument("--arch", default="x64", help="target: " + ", ".join(ARCHS) + " (default x64)")
    ap.add_argument("--preprocess", action="store_true",
                    help="scan C sources for MP_QSTR_ names and write CONFIG_H (-o)")
    ap.add_argument("--qstrs", help="CONFIG_H from --preprocess: the module's qstr table")
    ap.add_argument("-l", "--libs", action="append", default=[],
                    help="static archive (.a) to pull undefined symbols from, e.g. libgcc.a")
    ap.add_argument("-o", "--output", help="output file")
    ap.add_argument("-v", "--verbose", action="count", default=0, help="more output")
    ap.add_argument("files", nargs="+", help="C sources (--preprocess) or ELF object files")
    args = ap.parse_args(argv)
    try:
        if args.preprocess:
            out = args.output or os.path.splitext(args.files[0])[0] + ".config.h"
            preprocess(args.files, out)
            return 0
        out = args.output or os.path.splitext(args.files[0])[0] + ".mpy"
        qstrs = read_config_qstrs(args.qstrs) if args.qstrs else []
        linker = Linker(args.arch, qstrs, args.verbose)
        for path in args.files:
            with open(path, "rb") as f:
                linker.add_object(path, f.read())
        if args.libs:
            linker.add_libraries(args.libs)
        linker.link()
        linker.write(out)
        return 0
    except LinkError as e:
        print("mpy_link: error: %s" % e, file=sys.stderr)
        return 1
    except OSError as e:
        print("mpy_link: error: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
