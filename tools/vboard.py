#!/usr/bin/env python3
"""Serve a virtual board: `python tools/vboard.py --board rp2040` is `tinyadapt vboard --board rp2040`.

Works from a checkout without installing the package.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host_sim"))

from tinyadapt_host.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["vboard"] + sys.argv[1:]))
