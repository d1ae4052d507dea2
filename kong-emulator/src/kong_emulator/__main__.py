"""`python -m kong_emulator -c kong.conf`."""

import sys

from kong_emulator.app import main

if __name__ == "__main__":
    sys.exit(main())
