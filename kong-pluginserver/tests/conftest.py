"""kong_pluginserver's tests reuse the emulator tests' helpers (tests/emulator/emu_support.py: the t-script plugin,
contexts, server processes) and this folder's Kong-side driver (kong_driver.py)."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests" / "emulator"))
sys.path.insert(0, str(HERE))
