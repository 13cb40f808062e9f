"""Device tests, mpremote all the way: deploy the natmod and tinyadapt with
`mpremote cp`, run scripts there, compare with host_sim.

Against the virtual rp2040 by default; against a real board when TINYADAPT_PORT names
its serial port (TINYADAPT_ARCH gives its natmod arch, default armv6m).
"""
import os
import subprocess
import sys

import pytest

import _tinyadapt as host
import parity_cases
from conftest import NATMOD_SRC, ROOT

REAL_PORT = os.environ.get("TINYADAPT_PORT")


def mpremote(url, *args, timeout=180):
    cmd = [sys.executable, "-m", "mpremote", "connect", url] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """(url, arch, root or None) of a board with build/deploy/<arch>/lib deployed."""
    import build_lib
    import build_natmod
    if REAL_PORT:
        arch = os.environ.get("TINYADAPT_ARCH", "armv6m")
        board_ctx = None
        url, root = REAL_PORT, None
    else:
        from tinyadapt_host.vboard import VirtualBoard
        arch = "x64"
        root = tmp_path_factory.mktemp("rp2040")
        board_ctx = VirtualBoard("rp2040", root=root).start()
        url = board_ctx.url
    build_natmod.build(arch, NATMOD_SRC, os.path.join(ROOT, "build", "natmod", arch, "_tinyadapt.mpy"))
    lib = build_lib.build(arch)
    p = mpremote(url, "cp", "-r", lib, ":")
    assert p.returncode == 0, p.stderr
    try:
        yield url, arch, root
    finally:
        if board_ctx is not None:
            board_ctx.stop()


def test_deploy_lands_in_lib(board):
    url, arch, root = board
    p = mpremote(url, "fs", "ls", ":lib")
    assert p.returncode == 0, p.stderr
    assert "_tinyadapt.mpy" in p.stdout and "tinyadapt/" in p.stdout
    if root is not None:  # the virtual board's filesystem is its folder, nothing else
        assert (root / "lib" / "_tinyadapt.mpy").is_file()
        assert (root / "lib" / "tinyadapt" / "layers.mpy").is_file()


def test_kernels_on_board_match_host_sim(board, tmp_path):
    url, _, _ = board
    case_list = parity_cases.cases(seed=99)
    # in chunks: the board compiles each script in its own heap (a Pico's 230 KB)
    lines = []
    for i in range(0, len(case_list), 60):
        script = tmp_path / ("parity%d.py" % i)
        script.write_text(parity_cases.micropython_script(case_list[i:i + 60]))
        p = mpremote(url, "run", str(script))
        assert p.returncode == 0, p.stdout[-500:] + p.stderr
        out = p.stdout.replace("\r\n", "\n").splitlines()
        assert out and out[-1] == "DONE", out[-5:]
        lines += out[:-1]
    want = [parity_cases.run_host(host, c) for c in case_list]
    bad = [(c[0], w, g) for c, w, g in zip(case_list, want, lines) if w != g]
    assert len(lines) == len(want) and not bad, bad[:5]


def test_dense_on_board_matches_host(board, tmp_path):
    url, _, _ = board
    code = (
        "import array, tinyadapt\n"
        "w = bytes(range(0, 120, 10)) + bytes(range(255, 135, -10))\n"
        "d = tinyadapt.Dense(w, array.array('i', [5, -5, 100, 0]), array.array('i', [1518500250] * 4),"
        " array.array('i', [-3, -2, -1, 0]), 6, 4, in_zp=2, out_zp=-1)\n"
        "print(bytes(d(bytes(range(12)))).hex())\n"
    )
    script = tmp_path / "dense.py"
    script.write_text(code)
    p = mpremote(url, "run", str(script))
    assert p.returncode == 0, p.stderr
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "host_sim"),
                                                       os.path.join(ROOT, "python_lib")]))
    h = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env)
    assert h.returncode == 0, h.stderr
    assert p.stdout.strip() == h.stdout.strip() and len(h.stdout.strip()) == 16


def test_bad_input_raises_and_board_still_answers(board, tmp_path):
    url, _, _ = board
    code = (
        "import _tinyadapt as t, array, tinyadapt\n"
        "bad = [lambda: t.fully_connected(b'', b'', b'', b'', b'', b'', 1, 1, 0, 0, 0, 0),\n"
        "       lambda: t.fully_connected(bytearray(1), 5, b'', b'', b'', b'', 1, 1, 0, 0, 0, 0),\n"
        "       lambda: t.fully_connected(bytearray(1), bytes(1000), bytes(1), bytes(4), bytes(4), bytes(4), 1, 1, 0, 0, 0, 0),\n"
        "       lambda: t.requantize(bytearray(4), array.array('f', [0.0]), bytes(4), bytes(4), 0, -128, 127),\n"
        "       lambda: t.xorshift32_fill(bytearray(4), 0),\n"
        "       lambda: t.rounding_rshift(1.5, 1),\n"
        "       lambda: tinyadapt.Dense(bytes(6), bytes(8), bytes(8), bytes(8), 3, 3)]\n"
        "for f in bad:\n"
        "    try:\n"
        "        f()\n"
        "        print('NO ERROR')\n"
        "    except (TypeError, ValueError) as e:\n"
        "        print(type(e).__name__, e)\n"
    )
    script = tmp_path / "bad.py"
    script.write_text(code)
    p = mpremote(url, "run", str(script))
    assert p.returncode == 0, p.stderr
    got = p.stdout.replace("\r\n", "\n").strip().splitlines()
    assert got == [
        "TypeError out: buffer is read-only",
        "TypeError inp: expected a buffer",
        "ValueError out: size 1 bytes, expected 1000",
        "TypeError inp: expected int32 buffer",
        "ValueError seed out of range",
        got[5] if got[5].startswith("TypeError") else "TypeError (float)",
        "ValueError weights: size 6 bytes, expected 9",
    ]
    p = mpremote(url, "exec", "import gc; print('alive', gc.mem_free() > 0)")
    assert p.returncode == 0 and p.stdout.strip() == "alive True"
