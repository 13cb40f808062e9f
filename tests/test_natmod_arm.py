"""ARM natmods (RP2040's armv6m, Cortex-M3/M4) built by our linker, run without a board.

tests/armemu.py loads the .mpy with its own reading of the format, applies the load-time
relocations as MicroPython's loader does, and runs the code on an emulated Cortex-M0 /
M3 / M4 (unicorn) with a stand-in runtime. Every parity case must give the same report
as host_sim: this checks the linker's relocations (GOT, Thumb branches, libgcc helpers,
the entry stub) by executing them, and the kernels on the boards' instruction sets.
The relocations are also checked one by one against the ELF objects.
"""
import os
import struct

import pytest

import _tinyadapt as host
import parity_cases
from conftest import NATMOD_SRC, ROOT, arm_gcc_available, require

ARCHS = ["armv6m", "armv7m", "armv7emsp"]


def build_arm(arch):
    require(arm_gcc_available(), "arm-none-eabi-gcc",
            "sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi (make deps as root)")
    import build_natmod
    out = os.path.join(ROOT, "build", "natmod", arch, "_tinyadapt.mpy")
    build_natmod.build(arch, NATMOD_SRC, out)
    return arch, out


@pytest.fixture(scope="module", params=ARCHS)
def arm_natmod(request):
    return build_arm(request.param)


def run_case(machine, case):
    name, args = case
    conv = [("buf", a.data, a.typecode, a.writable) if isinstance(a, parity_cases.Buf) else a
            for a in args]
    import armemu
    try:
        res, objs = machine.invoke(name, conv)
    except armemu.Raised as e:
        return "EXC %s %s" % (e.etype, e.msg)
    parts = [machine.buffer_bytes(o).hex() for a, o in zip(args, objs)
             if isinstance(a, parity_cases.Buf) and a.writable]
    return "OK %s %s" % (" ".join(parts) or "-", res)


def test_arm_natmod_matches_host_sim(arm_natmod):
    import armemu
    arch, path = arm_natmod
    with open(path, "rb") as f:
        data = f.read()
    m = armemu.Machine(data)
    assert m.mod.arch == arch and m.mod.sub_version == 3
    assert set(m.globals) >= {"fully_connected", "requantize", "rounding_rshift", "srdhm",
                              "mul_by_quantized_mult", "saturate", "xorshift32_fill", "ABI"}
    case_list = parity_cases.cases()
    mismatches = []
    for case in case_list:
        got = run_case(m, case)
        want = parity_cases.run_host(host, case)
        if got != want:
            mismatches.append((case[0], want, got))
    assert not mismatches, mismatches[:5]


def _elf_relocs(obj_path):
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection
    out = []
    with open(obj_path, "rb") as f:
        elf = ELFFile(f)
        for sec in elf.iter_sections():
            if isinstance(sec, RelocationSection):
                target = elf.get_section(sec.header.sh_info)
                if target.header.sh_flags & 2:  # allocated sections only
                    for r in sec.iter_relocations():
                        out.append((target.name, r["r_info_type"]))
    return out


def test_arm_relocations_against_elf(arm_natmod):
    """Every relocation gcc emitted is of a kind the linker handles, and each one that
    needs the loader (GOT words, absolute words) appears in the .mpy's relocation list."""
    import armemu
    arch, path = arm_natmod
    objdir = os.path.join(os.path.dirname(path), "obj")
    kinds = {}
    n_abs = 0
    for name in os.listdir(objdir):
        if name.endswith(".o"):
            for sec, t in _elf_relocs(os.path.join(objdir, name)):
                kinds[t] = kinds.get(t, 0) + 1
                n_abs += t == 2  # R_ARM_ABS32: a word the loader must adjust
    # R_ARM_ABS32, REL32, THM_CALL, BASE_PREL, GOT_BREL, THM_JUMP24/19/11/8: what gcc -Os
    # emits for these cores with -fpic; anything else would have failed the link.
    assert set(kinds) <= {2, 3, 10, 25, 26, 30, 51, 102, 103}, kinds
    assert kinds.get(26, 0) > 0 and kinds.get(25, 0) > 0  # the GOT is really used
    with open(path, "rb") as f:
        mod = armemu.NativeMpy(f.read())
    # the GOT holds mp_fun_table (kind 8) and the qstr table (kind 6): those two
    # load-time relocations plus one per absolute word in the ELF objects: the
    # function objects in .data.rel.ro point at their C function (text, kind 0) and
    # at their type (an mp_fun_table entry, kind 9 + index)
    dests = [k for _, _, k in mod.relocs]
    assert dests.count(8) == 1 and dests.count(6) == 1
    assert dests.count(0) + sum(k >= 9 for k in dests) == n_abs
    assert len(dests) == n_abs + 2
    # each relocated word lies inside the text, word-aligned by construction
    assert all(0 <= 4 * i < len(mod.text) for rod, i, _ in mod.relocs if not rod)


def test_arm_libgcc_is_linked_for_m0():
    """On Cortex-M0 the binding divides: the link pulls __aeabi_uidiv from libgcc, and
    the emulated M0 (which has no divide instruction) runs it in the parity test."""
    arch, path = build_arm("armv6m")
    import subprocess
    import mpy_link
    import build_natmod
    cc = build_natmod.compiler(arch)
    lib = subprocess.run([cc, "-mthumb", "-mcpu=cortex-m0", "-print-libgcc-file-name"],
                         capture_output=True, text=True, check=True).stdout.strip()
    objdir = os.path.join(os.path.dirname(path), "obj")
    linker = mpy_link.Linker(arch, mpy_link.read_config_qstrs(os.path.join(objdir, "_tinyadapt.config.h")))
    for name in sorted(os.listdir(objdir)):
        if name.endswith(".o"):
            with open(os.path.join(objdir, name), "rb") as f:
                linker.add_object(name, f.read())
    assert any(s.name.startswith("__aeabi_uidiv") for s in linker.undefined())
    linker.add_libraries([lib])
    assert not linker.undefined()
    assert any("libgcc.a" in o.name for o in linker.objs)
