"""The natmod in real MicroPython against host_sim: same calls, identical reports.

Outputs are compared as bytes (hex) and exceptions by type and message. The cases
(tests/parity_cases.py) cover random shapes, edge values and every bad-input rule;
after all the bad calls the interpreter must still be alive to print DONE.
"""
import os
import shutil

import _tinyadapt as host
import parity_cases
from conftest import run_mpy


def test_natmod_matches_host_sim(micropython, natmod_x64, tmp_path):
    shutil.copy(natmod_x64, tmp_path / "_tinyadapt.mpy")
    case_list = parity_cases.cases()
    script = parity_cases.micropython_script(case_list)
    proc = run_mpy(micropython, script, str(tmp_path), heap=200 * 1024)
    assert proc.returncode == 0, proc.stderr + proc.stdout[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[-1] == "DONE", lines[-5:]
    got = lines[:-1]
    want = [parity_cases.run_host(host, c) for c in case_list]
    assert len(got) == len(want)
    mismatches = [(c[0], w, g) for c, w, g in zip(case_list, want, got) if w != g]
    assert not mismatches, mismatches[:5]
    # the cases are not vacuous: both kinds of report occur, many times
    assert sum(w.startswith("OK") for w in want) > 100
    assert sum(w.startswith("EXC") for w in want) > 30


def test_natmod_hand_values(micropython, natmod_x64, tmp_path):
    """A few results written down from the rules, checked on the board runtime."""
    shutil.copy(natmod_x64, tmp_path / "_tinyadapt.mpy")
    code = (
        "import _tinyadapt as t, array\n"
        "print(t.rounding_rshift(-5, 1), t.rounding_rshift(5, 1), t.rounding_rshift(-6, 2))\n"
        "print(t.srdhm(-2**31, -2**31), t.srdhm(2**30, 2**30))\n"
        "print(t.mul_by_quantized_mult(101, 2**30, -1))\n"
        "o = bytearray(2)\n"
        "t.fully_connected(o, bytes([1, 2, 3]), bytes([1, 1, 1, 255, 255, 255]),"
        " array.array('i', [10, 0]), array.array('i', [2**30, 2**30]), array.array('i', [0, 1]),"
        " 3, 2, 0, 0, -128, 127)\n"
        "print(list(o))\n"
        "b = array.array('I', [0, 0]); t.xorshift32_fill(b, 1); print(['%x' % v for v in b])\n"
    )
    proc = run_mpy(micropython, code, str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    # -2.5 -> -3, 2.5 -> 3, -1.5 -> -2 (half away from zero); INT32_MIN^2 saturates;
    # (2^30 * 2^30 * 2) >> 32 = 2^29; 101/2 = 50.5 -> 51 (SRDHM), 51/2 = 25.5 -> 26;
    # (6 + 10) / 2 = 8; -6 << 1 = -12, /2 = -6 -> 250 as a byte;
    # xorshift32 from 1: 1 ^ 1<<13 = 0x2001; ^ >>17 = 0x2001; ^ <<5 = 0x42021
    assert proc.stdout.split("\n")[:5] == [
        "-3 3 -2", "2147483647 536870912", "26", "[8, 250]", "['42021', '4080601']"]


def test_crc32_is_zlibs(micropython, natmod_x64, tmp_path):
    """The natmod's crc32 equals zlib's (an independent implementation), in chunks too."""
    import zlib
    shutil.copy(natmod_x64, tmp_path / "_tinyadapt.mpy")
    data = bytes((i * 131 + 17) & 255 for i in range(3000))
    code = ("import _tinyadapt as t\n"
            "d = bytes((i * 131 + 17) & 255 for i in range(3000))\n"
            "print(t.crc32(d), t.crc32(d[1000:], t.crc32(d[:1000])), t.crc32(b''), t.crc32(b'a', 5))\n")
    proc = run_mpy(micropython, code, str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    want = [zlib.crc32(data), zlib.crc32(data), 0, zlib.crc32(b"a", 5)]
    assert proc.stdout.split() == [str(v) for v in want]
