#!/usr/bin/env python3
"""Build a MicroPython dynamic native module (.mpy) from C sources for one architecture.

The same steps as MicroPython's py/dynruntime.mk (generate the qstr config header,
compile each source with the architecture's flags, link with tools/mpy_link.py), as a
function that the Makefile and the tests share. Rebuilds only what is out of date.

    python tools/build_natmod.py --arch armv6m -o build/natmod/armv6m/_tinyadapt.mpy natmod/*.c
"""
import argparse
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import mpy_link  # noqa: E402

# (cross prefix, arch flags, MICROPY_FLOAT_IMPL) as in MicroPython's py/dynruntime.mk
ARCH_BUILD = {
    "x64": ("", ["-fno-stack-protector"], "DOUBLE"),
    "armv6m": ("arm-none-eabi-", ["-mthumb", "-mcpu=cortex-m0"], "FLOAT"),
    "armv7m": ("arm-none-eabi-", ["-mthumb", "-mcpu=cortex-m3"], "FLOAT"),
    "armv7emsp": ("arm-none-eabi-", ["-mthumb", "-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16",
                                     "-mfloat-abi=hard"], "FLOAT"),
    "xtensawin": ("xtensa-esp32-elf-", [], "FLOAT"),
    # ESP8266 (call0 ABI); Debian ships this compiler as gcc-xtensa-lx106
    "xtensa": ("xtensa-lx106-elf-", ["-mforce-l32"], "NONE"),
}

INSTALL_HINT = {
    "arm-none-eabi-": "install it with: sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi"
                      " (or run `make deps` as root)",
    "xtensa-lx106-elf-": "install it with: sudo apt-get install gcc-xtensa-lx106 picolibc-xtensa-lx106-elf",
    "xtensa-esp32-elf-": "it is Espressif's toolchain (ESP-IDF `./install.sh esp32`, then "
                         "`. ./export.sh`); no package registry reachable here ships it",
}


class MissingCompiler(Exception):
    pass


def compiler(arch):
    cross = os.environ.get("CROSS_" + arch.upper(), ARCH_BUILD[arch][0])
    cc = cross + "gcc"
    if shutil.which(cc) is None:
        raise MissingCompiler("%s not found, so no %s native module can be built: %s"
                              % (cc, arch, INSTALL_HINT.get(cross, "install it")))
    return cc


def libc_headers(cc):
    """-isystem for a cross compiler whose C headers come from picolibc (Debian puts
    them in /usr/lib/<triple>/include, off gcc's default search path)."""
    triple = os.path.basename(cc)[:-len("-gcc")]
    inc = os.path.join("/usr/lib", triple, "include")
    return ["-isystem", inc] if os.path.isfile(os.path.join(inc, "assert.h")) else []


def cflags(arch, config_h, mpy_dir, opt="-Os"):
    _, flags, fl = ARCH_BUILD[arch]
    if arch == "xtensa":
        flags = flags + libc_headers(ARCH_BUILD[arch][0] + "gcc")
    return ([opt, "-std=c99", "-Wall", "-Werror", "-DNDEBUG", "-DNO_QSTR",
             "-DMICROPY_ENABLE_DYNRUNTIME", "-DMP_CONFIGFILE=<%s>" % os.path.abspath(config_h),
             "-I" + mpy_dir, "-I" + os.path.join(ROOT, "natmod"),
             "-fpic", "-fno-common", "-U_FORTIFY_SOURCE",
             # no unwind tables: a natmod has nowhere to put them
             "-fno-asynchronous-unwind-tables", "-fno-unwind-tables",
             # our own memset/memcpy must not be turned back into calls to themselves
             "-fno-tree-loop-distribute-patterns",
             "-fstack-usage",
             "-DMICROPY_FLOAT_IMPL=MICROPY_FLOAT_IMPL_" + fl] + flags)


def _stale(target, deps):
    if not os.path.exists(target):
        return True
    t = os.path.getmtime(target)
    return any(os.path.getmtime(d) > t for d in deps)


def build(arch, sources, output, build_dir=None, opt="-Os", extra_cflags=(), verbose=0,
          libgcc=True):
    """Compile and link; returns the .mpy path. Raises MissingCompiler or LinkError."""
    if arch not in ARCH_BUILD:
        raise mpy_link.LinkError("unknown arch %s (known: %s)" % (arch, ", ".join(ARCH_BUILD)))
    cc = compiler(arch)
    mpy_dir = mpy_link.mpy_dir()
    if not os.path.isfile(os.path.join(mpy_dir, "py", "dynruntime.h")):
        raise FileNotFoundError("no MicroPython headers in %s: run tools/fetch_mpy.py or set MPY_DIR"
                                % mpy_dir)
    sources = [os.path.abspath(s) for s in sources]
    output = os.path.abspath(output)
    mod = os.path.splitext(os.path.basename(output))[0]
    build_dir = build_dir or os.path.join(os.path.dirname(os.path.abspath(output)), "obj")
    os.makedirs(build_dir, exist_ok=True)
    config_h = os.path.join(build_dir, mod + ".config.h")
    headers = [os.path.join(ROOT, "natmod", h) for h in os.listdir(os.path.join(ROOT, "natmod"))
               if h.endswith(".h")]
    me = [os.path.abspath(__file__), mpy_link.__file__]
    if _stale(config_h, list(sources) + me):
        mpy_link.preprocess(sources, config_h)
    flags = cflags(arch, config_h, mpy_dir, opt) + list(extra_cflags)
    objs = []
    for src in sources:
        obj = os.path.join(build_dir, os.path.splitext(os.path.basename(src))[0] + ".o")
        objs.append(obj)
        if _stale(obj, [src, config_h] + headers + me):
            cmd = [cc] + flags + ["-c", src, "-o", obj]
            if verbose:
                print(" ".join(cmd))
            subprocess.run(cmd, check=True, cwd=build_dir)
    libs = []
    if libgcc and arch != "x64":
        lib = subprocess.run([cc] + ARCH_BUILD[arch][1] + ["-print-libgcc-file-name"],
                             check=True, capture_output=True, text=True).stdout.strip()
        if os.path.isfile(lib):
            libs.append(lib)
    if _stale(output, objs + libs + me):
        linker = mpy_link.Linker(arch, mpy_link.read_config_qstrs(config_h), verbose)
        for o in objs:
            with open(o, "rb") as f:
                linker.add_object(os.path.basename(o), f.read())
        if libs:
            linker.add_libraries(libs)
        linker.link()
        linker.write(output)
    return output


def stack_usage(build_dir):
    """(function, bytes, qualifier) from gcc's -fstack-usage files, largest first."""
    rows = []
    for name in sorted(os.listdir(build_dir)):
        if name.endswith(".su"):
            with open(os.path.join(build_dir, name)) as f:
                for line in f:
                    parts = line.rstrip("\n").split("\t")
                    if len(parts) == 3:
                        rows.append((parts[0].split(":")[-1], int(parts[1]), parts[2]))
    rows.sort(key=lambda r: -r[1])
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description="Build a MicroPython native module (.mpy) "
                                 "from C sources with tools/mpy_link.py.")
    ap.add_argument("--arch", default="x64", help="one of: " + ", ".join(ARCH_BUILD))
    ap.add_argument("-o", "--output", required=True, help="output .mpy path")
    ap.add_argument("--build-dir", help="object directory (default: <output dir>/obj)")
    ap.add_argument("--stack-usage", action="store_true",
                    help="print per-function stack use (gcc -fstack-usage)")
    ap.add_argument("-v", "--verbose", action="count", default=0, help="show commands")
    ap.add_argument("sources", nargs="+", help="C sources")
    args = ap.parse_args(argv)
    try:
        out = build(args.arch, args.sources, args.output, args.build_dir, verbose=args.verbose)
    except MissingCompiler as e:
        print("build_natmod: cannot build for %s: %s" % (args.arch, e), file=sys.stderr)
        return 3
    except mpy_link.LinkError as e:
        print("build_natmod: link error: %s" % e, file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as e:
        print("build_natmod: command failed (%d): %s" % (e.returncode, " ".join(e.cmd)), file=sys.stderr)
        return 1
    print("built %s (%d bytes)" % (out, os.path.getsize(out)))
    if args.stack_usage:
        bd = args.build_dir or os.path.join(os.path.dirname(os.path.abspath(out)), "obj")
        for fn, n, q in stack_usage(bd)[:15]:
            print("  stack %6d  %-8s %s" % (n, q, fn))
    return 0


if __name__ == "__main__":
    sys.exit(main())
