"""Write the auth service's settings table (from ``storyverse_auth.config.Settings``) into auth-service/README.md,
between the `<!-- settings:start -->` and `<!-- settings:end -->` markers.

    python scripts/gen_auth_settings.py            # rewrite the table
    python scripts/gen_auth_settings.py --check    # exit 1 if it is stale (tests/auth_service/test_auth_settings.py)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from storyverse_auth.config import settings_table

README = Path(__file__).resolve().parents[1] / "auth-service" / "README.md"
START, END = "<!-- settings:start -->\n", "<!-- settings:end -->\n"


def rendered(text: str) -> str:
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return head + START + settings_table() + END + tail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = README.read_text()
    if START not in text or END not in text:
        print(f"{README} lacks the settings markers", file=sys.stderr)
        return 1
    fresh = rendered(text)
    if args.check:
        if fresh != text:
            print(f"{README} settings table is stale; run python scripts/gen_auth_settings.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
