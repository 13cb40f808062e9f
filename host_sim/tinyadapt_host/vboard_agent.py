# Runs inside the unix MicroPython and executes code for the virtual board
# server (vboard.py), which speaks the REPL protocol to clients.
#
#   micropython -X heapsize=N vboard_agent.py ROOT CMD_FD CTL_FD TOKEN FS_BYTES
#
# ROOT becomes "/" (confined: ".." never climbs above it), /lib is on sys.path.
# User code runs in the real __main__ globals, so the agent keeps all of its
# own state in locals of _vb() and clears the module dict before serving.
#
# Host -> agent, on CMD_FD: a 24-byte header "X" mode id(10 digits)
# length(10 digits) " \n", then `length` bytes. mode: f = file input
# ("<stdin>", raw REPL), s = single input (friendly REPL line), p = file input
# from friendly paste mode, b = run the file named by the body if it exists.
# Agent -> host, on CTL_FD: once "H <mem_free> <mem_alloc> <sys.version>\n";
# per command "B" + the header when it starts running, then "E" + the header +
# status (0 ok, 1 exception, 2 SystemExit), the traceback text, TOKEN. Program
# output goes to stdout, unbuffered, so all of it is in the pipe before "E".
#
# Ctrl-C arrives as a KeyboardInterrupt raised at the next VM branch (the
# host's launcher arms SIGUSR2 for that, see _BOOT in vboard.py), or as an
# asynchronous SIGINT when MicroPython is run some other way. The reply path
# allocates nothing, so a full heap cannot stop the agent answering.
import sys
import os
import gc


def _vb(
    argv,
    exec=exec,
    compile=compile,
    open=open,
    int=int,
    len=len,
    BaseException=BaseException,
    KeyboardInterrupt=KeyboardInterrupt,
    MemoryError=MemoryError,
    SystemExit=SystemExit,
    OSError=OSError,
    sys=sys,
    os=os,
    gc=gc,
):
    root = argv[1]
    cmd = open(int(argv[2]), "rb")
    ctl = open(int(argv[3]), "wb")
    token = b"\x00" + argv[4].encode() + b"\x00"
    fs_bytes = int(argv[5])
    VfsPosix = os.VfsPosix

    class VfsRoot:
        # A VfsPosix(root) alone lets "/../x" reach the parent of root, so
        # every path is made absolute and normalised here first.
        def __init__(self, path):
            self.v = VfsPosix(path)
            self.cwd = "/"

        def _p(self, p):
            if p[:1] != "/":
                p = self.cwd + "/" + p
            parts = []
            for s in p.split("/"):
                if s == "..":
                    if parts:
                        parts.pop()
                elif s and s != ".":
                    parts.append(s)
            return "/" + "/".join(parts)

        def __repr__(self):
            return "<VfsRoot>"

        def mount(self, readonly, mkfs):
            pass

        def umount(self):
            pass

        def open(self, p, mode):
            return self.v.open(self._p(p), mode)

        def ilistdir(self, p):
            # 4-tuples with the size, like littlefs/FAT on a board
            p = self._p(p)
            v = self.v
            for e in v.ilistdir(p):
                size = 0
                if e[1] == 0x8000:
                    try:
                        size = v.stat(p + "/" + e[0])[6]
                    except OSError:
                        pass
                yield (e[0], e[1], e[2], size)

        def stat(self, p):
            return self.v.stat(self._p(p))

        def statvfs(self, p):
            st = self.v.statvfs(self._p(p))
            if not fs_bytes:
                return st
            bs = 4096
            blocks = fs_bytes // bs
            used = self._used("/", bs)
            free = blocks - used if used < blocks else 0
            return (bs, bs, blocks, free, free, 0, 0, 0, 0, st[9])

        def _used(self, p, bs):
            n = 0
            for e in self.v.ilistdir(p):
                q = p + e[0] if p == "/" else p + "/" + e[0]
                if e[1] == 0x4000:
                    n += 1 + self._used(q, bs)
                else:
                    try:
                        n += (self.v.stat(q)[6] + bs - 1) // bs
                    except OSError:
                        pass
            return n

        def mkdir(self, p):
            self.v.mkdir(self._p(p))

        def rmdir(self, p):
            self.v.rmdir(self._p(p))

        def remove(self, p):
            self.v.remove(self._p(p))

        def rename(self, a, b):
            self.v.rename(self._p(a), self._p(b))

        def chdir(self, p):
            p = self._p(p)
            if not self.v.stat(p)[0] & 0x4000:
                raise OSError(20)  # ENOTDIR
            self.cwd = p

        def getcwd(self):
            return self.cwd

    try:
        os.umount("/")
    except OSError:
        pass
    os.mount(VfsRoot(root), "/")
    os.chdir("/")
    # like a board: current dir, frozen modules, /lib
    path = [""]
    if ".frozen" in sys.path:
        path.append(".frozen")
    path.append("/lib")
    sys.path[:] = path
    sys.argv[:] = []

    # A board's print() writes "\r\n" (cooked stdout) while sys.stdout.buffer
    # stays binary (mpremote mount relies on it), so cook print() here rather
    # than the whole stream on the host.
    import io
    import builtins

    out = sys.stdout
    outb = out.buffer
    err = sys.stderr
    _print = builtins.print

    class Cooked(io.IOBase):
        def write(self, b):
            if b.find(b"\n") < 0:
                outb.write(b)
            else:
                outb.write(bytes(b).replace(b"\n", b"\r\n"))
            return len(b)

    cooked = Cooked()

    def print(*args, sep=" ", end="\n", file=None):
        if file is None or file is out or file is err:
            file = cooked
        _print(*args, sep=" " if sep is None else sep, end="\n" if end is None else end, file=file)

    builtins.print = print

    g = globals()
    for k in list(g):
        if k != "__name__":
            del g[k]
    path = k = VfsPosix = io = builtins = None

    hbuf = bytearray(24)  # hbuf[23] == "\n" marks a complete header
    bbuf = bytearray(25)
    bbuf[0] = 66  # "B"
    ebuf = bytearray(26)
    ebuf[0] = 69  # "E"
    one = bytearray(1)
    st_byte = (48, 49, 50)
    rd = cmd.readinto
    rdn = cmd.read
    wr = ctl.write
    pexc = sys.print_exception
    collect = gc.collect

    gc.collect()
    wr(("H %d %d %s\n" % (gc.mem_free(), gc.mem_alloc(), sys.version)).encode())

    # A KeyboardInterrupt can surface at any backward jump (with a plain
    # SIGINT even between a read and the store of its result), so the loop is
    # a state machine that a stray one (a Ctrl-C that arrived as a command
    # finished) can hit anywhere: phase 0 waits for a command, 1 runs it,
    # 2 reports. The host interrupts only after "B", i.e. once the command has
    # been read, so reading is never cut short.
    phase = 0
    stage = 0
    status = 0
    exc = None
    n = 0
    while True:
        try:
            if phase == 0:
                if hbuf[23] != 10:
                    rd(hbuf)  # a whole header, or nothing
                    if hbuf[23] != 10:
                        return  # host closed the command pipe: power off
                k = 2  # raise a stray Ctrl-C here, before the command runs
                while k:
                    k -= 1
                phase = 1
            if phase == 1:
                i = 0
                while i < 24:
                    bbuf[i + 1] = ebuf[i + 1] = hbuf[i]
                    i += 1
                hbuf[23] = 0
                mode = bbuf[2]
                n = 0
                i = 13
                while i < 23:
                    n = n * 10 + bbuf[i] - 48
                    i += 1
                status = 0
                exc = src = code = None
                # A SIGINT that lands inside gc_collect() leaves the unix
                # port's GC_COLLECT_FLAG set, so every allocation fails with
                # "heap is locked" (heap_unlock() does not clear it); a
                # collection does. Only when an allocation fails: then the
                # allocator would have collected anyway.
                try:
                    k = bytearray(1)
                except MemoryError:
                    collect()
                k = 0
                try:
                    try:
                        src = rdn(n)  # allocates before it consumes anything
                    except MemoryError:
                        # no room for the code: drain it so the next header lines up
                        while n:
                            rd(one)
                            n -= 1
                        raise
                    wr(bbuf)  # from here on Ctrl-C may interrupt
                    if mode == 98:  # b: run a boot file if it exists
                        fn = src.decode()
                        src = None
                        try:
                            os.stat(fn)
                        except OSError:
                            fn = None
                        if fn:
                            f = open(fn, "rb")
                            src = f.read()
                            f.close()
                            f = None
                            g["__file__"] = fn
                            code = compile(src, fn, "exec")
                            src = None
                            exec(code, g)
                    else:
                        if mode != 115:  # file input records __file__ like pyexec does
                            g["__file__"] = "<stdin>"
                        code = compile(src, "<stdin>", "single" if mode == 115 else "exec")
                        src = None
                        exec(code, g)
                except SystemExit:
                    status = 2
                except BaseException as e:
                    status = 1
                    exc = e
                stage = 0
                phase = 2
            if phase == 2:
                src = code = None
                ebuf[25] = st_byte[status]
                while stage < 3:
                    try:
                        if stage == 0:
                            wr(ebuf)
                            stage = 1
                        if stage == 1:
                            # a Ctrl-C while printing truncates rather than repeats
                            stage = 2
                            if exc is not None:
                                pexc(exc, ctl)
                        wr(token)
                        stage = 3
                    except KeyboardInterrupt:
                        pass
                    except MemoryError:
                        stage = 2
                exc = None
                phase = 0
        except KeyboardInterrupt:
            if phase == 1:
                # it landed after the command ended: report what it did
                stage = 0
                phase = 2


_vb(sys.argv)
