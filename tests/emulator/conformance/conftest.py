"""The Kong 3.9.1 conformance suite: one file per Kong subsystem, every expectation citing the Kong source or spec
line it comes from (paths relative to a Kong 3.9.1 checkout). The helpers of tests/emulator are imported by name."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))
