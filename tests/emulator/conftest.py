"""The emulator tests import the stack runner (scripts/run_stack.py: the image paths kong.conf names) by name."""

import sys
from pathlib import Path

SCRIPTS = str(Path(__file__).resolve().parents[2] / "scripts")
if SCRIPTS not in sys.path:
    sys.path.insert(0, SCRIPTS)
