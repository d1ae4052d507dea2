#!/usr/bin/env python3
"""Bench only: sv-jwt in a plugin server that counts its PDK round trips (see jwt_rpc_counter.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from jwt_rpc_counter import run

if __name__ == "__main__":
    run("sv-jwt")
