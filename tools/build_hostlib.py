#!/usr/bin/env python3
"""Build the tinyadapt C kernels as a host shared library for ctypes tests.

Compiles every natmod/ta_*.c except the MicroPython binding (ta_binding.c)
and the natmod libc shims (ta_libc.c) with the host gcc:

    python tools/build_hostlib.py [-o build/host/libtinyadapt.so] [--sanitize]

(--sanitize defaults to build/host/libtinyadapt_san.so; load it with
LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0.)

From Python: ``build(out_path, sanitize=False)`` returns the library path.
A build is skipped when the library is newer than every source, header and
this script, and was made with the same command line (kept in <out>.cmd).
"""

import argparse
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NATMOD = os.path.join(ROOT, "natmod")
DEFAULT_OUT = os.path.join(ROOT, "build", "host", "libtinyadapt.so")
# the sanitized library only loads with libasan preloaded, so it never
# replaces the plain one by default
DEFAULT_SAN_OUT = os.path.join(ROOT, "build", "host", "libtinyadapt_san.so")
EXCLUDED = ("ta_binding.c", "ta_libc.c")

BASE_FLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared"]
SANITIZE_FLAGS = [
    "-g",
    "-fno-omit-frame-pointer",
    "-fsanitize=undefined,address",
    # any UB report aborts the process instead of printing and going on
    "-fno-sanitize-recover=all",
]


def sources():
    names = sorted(
        n for n in os.listdir(NATMOD)
        if n.startswith("ta_") and n.endswith(".c") and n not in EXCLUDED
    )
    return [os.path.join(NATMOD, n) for n in names]


def headers():
    return [
        os.path.join(NATMOD, n) for n in sorted(os.listdir(NATMOD))
        if n.startswith("ta_") and n.endswith(".h")
    ]


def command(out_path, sanitize=False, cc=None):
    cc = cc or os.environ.get("CC", "gcc")
    flags = list(BASE_FLAGS) + (SANITIZE_FLAGS if sanitize else [])
    return [cc] + flags + ["-I", NATMOD, "-o", out_path] + sources()


def _up_to_date(out_path, cmd):
    stamp = out_path + ".cmd"
    try:
        built = os.path.getmtime(out_path)
        with open(stamp) as f:
            if f.read() != "\n".join(cmd):
                return False
    except OSError:
        return False
    deps = sources() + headers() + [os.path.abspath(__file__)]
    return all(os.path.getmtime(d) <= built for d in deps)


def build(out_path=None, sanitize=False, force=False, verbose=False):
    """Build (if needed) and return the absolute path of the shared library."""
    out_path = os.path.abspath(out_path or (DEFAULT_SAN_OUT if sanitize else DEFAULT_OUT))
    cmd = command(out_path, sanitize)
    if not force and _up_to_date(out_path, cmd):
        return out_path
    out_dir = os.path.dirname(out_path)
    os.makedirs(out_dir, exist_ok=True)
    # build to a temporary name, then rename: a concurrent test run never
    # loads a half-written library
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
    os.close(fd)
    try:
        tmp_cmd = command(tmp, sanitize)
        if verbose:
            print(" ".join(tmp_cmd))
        res = subprocess.run(tmp_cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(
                "host build failed:\n%s\n%s%s" % (" ".join(tmp_cmd), res.stdout, res.stderr)
            )
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    with open(out_path + ".cmd", "w") as f:
        f.write("\n".join(cmd))
    return out_path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default=None,
                    help="library path (default %s, or %s with --sanitize)"
                    % (os.path.relpath(DEFAULT_OUT, ROOT), os.path.relpath(DEFAULT_SAN_OUT, ROOT)))
    ap.add_argument("--sanitize", action="store_true",
                    help="build with -fsanitize=undefined,address")
    ap.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = ap.parse_args(argv)
    try:
        path = build(args.output, sanitize=args.sanitize, force=args.force, verbose=True)
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
