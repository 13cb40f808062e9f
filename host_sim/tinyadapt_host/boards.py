"""Board profiles: what a target board offers a tinyadapt model.

Each profile is a JSON file in ``boards/`` at the top of the repository
(``boards/rp2040.json`` ...). The fields every profile carries are listed in
REQUIRED_FIELDS; ``heap_bytes`` is the total MicroPython GC heap of a fresh
board (``gc.mem_free() + gc.mem_alloc()``), the number the virtual board
reproduces with ``-X heapsize``. Every number cites where it came from in the
profile's ``sources`` list; ``notes`` says which numbers are estimates.
"""

import json
import os
from pathlib import Path

REQUIRED_FIELDS = (
    "name",
    "title",
    "native_arch",
    "heap_bytes",
    "ram_bytes",
    "flash_bytes",
    "fs_bytes",
    "cpu_hz",
    "deploy",
    "sources",
    "notes",
)

# Architectures MicroPython can load native .mpy code for (py/persistentcode.h).
NATIVE_ARCHS = (
    "x86",
    "x64",
    "armv6",
    "armv6m",
    "armv7m",
    "armv7em",
    "armv7emsp",
    "armv7emdp",
    "xtensa",
    "xtensawin",
    "rv32imc",
)


class BoardError(ValueError):
    """A board name that has no profile, or a profile that is malformed."""


def boards_dir():
    """The folder holding the profiles: $TINYADAPT_BOARDS_DIR, else <repo>/boards."""
    env = os.environ.get("TINYADAPT_BOARDS_DIR")
    if env:
        return Path(env)
    # host_sim/tinyadapt_host/boards.py -> <repo>/boards
    return Path(__file__).resolve().parents[2] / "boards"


def list_boards():
    """Names of all profiles, sorted."""
    d = boards_dir()
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.json"))


class BoardProfile:
    """One board profile; fields are attributes (``profile.heap_bytes``)."""

    def __init__(self, data, path=None):
        self._data = dict(data)
        self.path = path

    def __getattr__(self, key):
        try:
            return self._data[key]
        except KeyError:
            raise AttributeError(key) from None

    def __getitem__(self, key):
        return self._data[key]

    def get(self, key, default=None):
        return self._data.get(key, default)

    def to_dict(self):
        return dict(self._data)

    def __repr__(self):
        return "BoardProfile(%r, heap_bytes=%r, native_arch=%r)" % (
            self._data.get("name"),
            self._data.get("heap_bytes"),
            self._data.get("native_arch"),
        )


def validate(data, where="profile"):
    """Raise BoardError if a profile misses a field or has a bad value."""
    missing = [k for k in REQUIRED_FIELDS if k not in data]
    if missing:
        raise BoardError("%s: missing field(s) %s" % (where, ", ".join(missing)))
    if data["native_arch"] not in NATIVE_ARCHS:
        raise BoardError("%s: unknown native_arch %r" % (where, data["native_arch"]))
    heap = data["heap_bytes"]
    if not isinstance(heap, int) or isinstance(heap, bool) or heap < 16 * 1024:
        raise BoardError("%s: heap_bytes must be an int >= 16384, got %r" % (where, heap))
    if not isinstance(data["sources"], list) or not data["sources"]:
        raise BoardError("%s: sources must be a non-empty list" % where)


def load_board(name_or_path):
    """Load a profile by name ("rp2040") or by path to a JSON file."""
    if isinstance(name_or_path, BoardProfile):
        return name_or_path
    s = str(name_or_path)
    if s.endswith(".json") or os.sep in s:
        path = Path(s)
    else:
        path = boards_dir() / (s + ".json")
    if not path.is_file():
        raise BoardError(
            "no board profile %r (known boards: %s)" % (s, ", ".join(list_boards()) or "none")
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise BoardError("%s: not valid JSON: %s" % (path, e)) from None
    validate(data, str(path))
    return BoardProfile(data, path)
