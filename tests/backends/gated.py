"""A stdio backend that answers nothing until a file appears, then becomes the kitchen sink.

`python gated.py GATE` waits, reading nothing, until the file GATE exists, then replaces itself
with `kitchen_sink.py` (which reads what the gateway sent meanwhile, its `initialize` first).
Tests open the gate to say when the backend "finishes starting"; a gate never opened is a
backend that hangs in its handshake.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

KITCHEN_SINK = Path(__file__).with_name("kitchen_sink.py")


def main() -> None:
    gate = Path(sys.argv[1])
    while not gate.exists():
        time.sleep(0.02)
    os.execv(sys.executable, [sys.executable, str(KITCHEN_SINK)])


if __name__ == "__main__":
    main()
