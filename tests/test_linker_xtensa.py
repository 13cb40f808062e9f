"""Xtensa output of the linker, checked against the ELF objects word by word.

ESP32's compiler (xtensa-esp32-elf-gcc) is on no registry reachable here; Debian ships
the ESP8266 one (gcc-xtensa-lx106). Its objects use the same Xtensa relocations as the
ESP32's: code loads every address and large constant with `l32r` from a literal pool
(R_XTENSA_SLOT0_OP), the pool words that hold addresses carry R_XTENSA_32. The linker
rebuilds the pools as one GOT plus one deduplicated literal table in front of the code.

No Xtensa emulator is at hand, so this test checks statically, with its own reading of
the .mpy (tests/armemu.py) and of the ELF (pyelftools): it finds where each input
section landed (by its bytes, relocated fields masked), applies the .mpy's load-time
relocations at chosen base addresses, decodes every `l32r` of the output and asserts
that the word it loads equals what the ELF says that literal is: the same constant, or
the run-time address of the same symbol. The modules are linked both as `xtensa`
(ESP8266) and as `xtensawin` (ESP32: rodata apart from the code, in RAM).
"""
import os
import re
import shutil
import struct

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

import armemu
from conftest import ROOT, require

SHAPES = os.path.join(ROOT, "tests", "natmod_shapes")
MODULES = {
    "rodata": ["shape_rodata.c", "../../natmod/ta_libc.c"],
    "data": ["shape_data.c", "../../natmod/ta_libc.c"],
    "split": ["shape_split_a.c", "shape_split_b.c"],
}
R_XTENSA_32, R_XTENSA_SLOT0_OP = 1, 20
TEXT, RODATA, BSS, QSTRS, FUN_TABLE = 0x40100000, 0x3FFE0000, 0x3FFF0000, 0x3FFD0000, 0x3FFC0000


def have_lx106():
    return shutil.which("xtensa-lx106-elf-gcc") is not None


class Obj:
    """An ELF object: sections (name -> (data, relocs)) and symbols."""

    def __init__(self, path):
        self.name = os.path.basename(path)
        with open(path, "rb") as f:
            elf = ELFFile(f)
            self.secs = {}
            by_index = {}
            for i, sec in enumerate(elf.iter_sections()):
                if sec.header.sh_flags & 2 and sec.header.sh_size:
                    by_index[i] = sec.name
                    data = sec.data() if sec.header.sh_type != "SHT_NOBITS" else b""
                    self.secs[sec.name] = [bytes(data), []]
            self.syms = []
            symtab = elf.get_section_by_name(".symtab")
            for s in symtab.iter_symbols():
                shndx = s["st_shndx"]
                self.syms.append((s.name, s["st_info"]["type"], s["st_info"]["bind"],
                                  by_index.get(shndx) if isinstance(shndx, int) else None,
                                  s["st_value"]))
            for sec in elf.iter_sections():
                if isinstance(sec, RelocationSection) and sec.header.sh_info in by_index:
                    name = by_index[sec.header.sh_info]
                    for r in sec.iter_relocations():
                        self.secs[name][1].append((r["r_offset"], r["r_info_type"],
                                                   self.syms[r["r_info_sym"]], r["r_addend"]))


def find_placement(image, data, relocs):
    """Offset of data in image, with relocated fields masked; None if not unique."""
    mask = bytearray(len(data))
    for off, rtype, _, _ in relocs:
        width = 4 if rtype in (R_XTENSA_32, 6) else 3
        for k in range(off, min(off + width, len(data))):
            mask[k] = 1
    if all(mask):
        return None  # nothing fixed to recognise it by
    pat = b"".join(b"." if mask[k] else re.escape(data[k:k + 1]) for k in range(len(data)))
    # a lookahead, so that overlapping candidates are all found
    hits = [m.start() for m in re.finditer(b"(?=" + pat + b")", bytes(image), re.DOTALL)]
    return hits[0] if len(hits) == 1 else None


def link(arch, module, tmp_path):
    require(have_lx106(), "xtensa-lx106-elf-gcc",
            "sudo apt-get install gcc-xtensa-lx106 picolibc-xtensa-lx106-elf (make deps as root)")
    import build_natmod
    out = str(tmp_path / (module + ".mpy"))
    srcs = [os.path.normpath(os.path.join(SHAPES, s)) for s in MODULES[module]]
    # compiled for the ESP8266 core; linked as the arch under test
    build_dir = str(tmp_path / "obj")
    orig = build_natmod.ARCH_BUILD.get(arch)
    build_natmod.ARCH_BUILD[arch] = build_natmod.ARCH_BUILD["xtensa"]
    try:
        build_natmod.build(arch, srcs, out, build_dir=build_dir, libgcc=False)
    finally:
        build_natmod.ARCH_BUILD[arch] = orig
    objs = [Obj(os.path.join(build_dir, f)) for f in sorted(os.listdir(build_dir)) if f.endswith(".o")]
    with open(out, "rb") as f:
        return armemu.NativeMpy(f.read()), objs


@pytest.mark.parametrize("arch", ["xtensa", "xtensawin"])
@pytest.mark.parametrize("module", sorted(MODULES))
def test_l32r_loads_what_the_elf_says(arch, module, tmp_path):
    mod, objs = link(arch, module, tmp_path)
    separate = arch == "xtensawin"
    assert not separate or not any(n.startswith(".rodata") and d for o in objs
                                   for n, (d, _) in o.secs.items()) or mod.rodata, \
        "xtensawin must keep rodata apart from the code"
    table = [0x50000000 + 4 * i for i in range(128)]
    text, rodata = armemu.relocate(mod, TEXT, RODATA, BSS, QSTRS, FUN_TABLE, table)

    # where every input section went
    place = {}
    for o in objs:
        for name, (data, relocs) in o.secs.items():
            if name.startswith(".text"):
                off = find_placement(mod.text, data, relocs)
                place[(o.name, name)] = None if off is None else TEXT + off
            elif name.startswith((".rodata", ".data")) and data:
                img, base = (mod.rodata, RODATA) if separate else (mod.text, TEXT)
                off = find_placement(img, data, relocs)
                place[(o.name, name)] = None if off is None else base + off
    text_secs = [k for k in place if k[1].startswith(".text")]
    assert text_secs and all(place[k] is not None for k in text_secs), place

    defined = {}  # global name -> its definition; a strong one wins over a weak one
    for o in objs:
        for sname, stype, bind, sec, value in o.syms:
            if sec and bind in ("STB_GLOBAL", "STB_WEAK") and sname:
                if bind == "STB_GLOBAL" or sname not in defined:
                    defined[sname] = (o, sec, value)

    def address(o, sym, addend):
        """Run-time address of sym+addend, or ('bss',) when only a range is known."""
        sname, stype, bind, sec, value = sym
        if bind in ("STB_GLOBAL", "STB_WEAK") and sname in defined:
            o, sec, value = defined[sname]
        elif sec is None:
            if sname == "mp_fun_table":
                return FUN_TABLE + addend
            if sname == "mp_native_qstr_table":
                return QSTRS + addend
            raise AssertionError("unresolved %s" % sname)
        if sec.startswith(".bss"):
            return ("bss",)
        base = place.get((o.name, sec))
        if base is None:
            # a data section too uniform to locate by its bytes (all zero): only
            # its region is known
            assert not sec.startswith(".text"), (o.name, sec)
            return ("rodata",) if separate else ("text",)
        return base + value + addend

    def check(got, expect, where):
        if expect == ("bss",):
            assert BSS <= got < BSS + mod.bss_size, (where, hex(got))
        elif expect == ("text",):
            assert TEXT <= got < TEXT + len(text), (where, hex(got))
        elif expect == ("rodata",):
            assert RODATA <= got < RODATA + len(rodata), (where, hex(got))
        else:
            assert got == expect & 0xFFFFFFFF, (where, hex(got), hex(expect))

    def word_at(addr):
        if TEXT <= addr < TEXT + len(text):
            return struct.unpack_from("<I", text, addr - TEXT)[0]
        return struct.unpack_from("<I", rodata, addr - RODATA)[0]

    checked = 0
    for o in objs:
        for name, (data, relocs) in o.secs.items():
            if not name.startswith(".text"):
                continue
            for off, rtype, sym, addend in relocs:
                if rtype != R_XTENSA_SLOT0_OP or sym[3] is None or not sym[3].startswith(".literal"):
                    continue
                lit_data, lit_relocs = o.secs[sym[3]]
                lo = sym[4] + addend
                expect = None
                for loff, ltype, lsym, laddend in lit_relocs:
                    if loff == lo:
                        existing = struct.unpack_from("<I", lit_data, lo)[0]
                        expect = address(o, lsym, laddend + existing)
                if expect is None:
                    expect = struct.unpack_from("<I", lit_data, lo)[0]
                P = place[(o.name, name)] + off
                ins = text[P - TEXT] | text[P - TEXT + 1] << 8 | text[P - TEXT + 2] << 16
                assert ins & 0xF == 1, "not an l32r at %s %s+0x%x" % (o.name, name, off)
                imm = ins >> 8
                target = ((P + 3) & ~3) + ((imm | ~0xFFFF) << 2)
                check(word_at(target), expect, (o.name, name, hex(off)))
                checked += 1
    assert checked >= 5, "too few l32r checked: %d" % checked

    # absolute words in data: after loading they hold their symbol's address
    for o in objs:
        for name, (data, relocs) in o.secs.items():
            if name.startswith((".rodata", ".data")) and place.get((o.name, name)):
                for off, rtype, sym, addend in relocs:
                    if rtype == R_XTENSA_32:
                        existing = struct.unpack_from("<I", data, off)[0]
                        expect = address(o, sym, addend + existing)
                        check(word_at(place[(o.name, name)] + off), expect, (o.name, name, off))


def test_xtensawin_without_compiler_says_so(monkeypatch):
    """Where xtensa-esp32-elf-gcc is missing, the build stops with a clear message."""
    import build_natmod
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(build_natmod.MissingCompiler, match="xtensa-esp32-elf-gcc not found"):
        build_natmod.compiler("xtensawin")
