"""Regenerate the "## Parameters" tables of helm/storyverse/README.md from the `## @param` lines of values.yaml with
bitnami's readme-generator-for-helm (npm, installed by scripts/install-readme-generator.sh; runs offline).

    python helm/tools/gen_readme.py            # rewrite the tables in README.md
    python helm/tools/gen_readme.py --check    # exit 1 if README.md is stale

The chart's `[enum: a|b]` modifier (read by helm/tools/gen_schema.py) is not one readme-generator knows, so the
generator reads a copy of values.yaml where it is folded into the description ("... (one of: a, b)").
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "storyverse"
ENUM = re.compile(r"^(\s*## @param \S+\s+)\[(?P<mods>[^\]]*)\]\s*(?P<desc>.*)$")


def fold_enums(values: str) -> str:
    out = []
    for line in values.splitlines():
        m = ENUM.match(line)
        if m:
            mods = [x.strip() for x in m["mods"].split(",")]
            enums = [x for x in mods if x.startswith("enum:")]
            if enums:
                choices = ", ".join(enums[0].removeprefix("enum:").strip().split("|"))
                rest = [x for x in mods if not x.startswith("enum:")]
                line = m.group(1) + (f"[{', '.join(rest)}] " if rest else "") + f"{m['desc']} (one of: {choices})"
        out.append(line)
    return "\n".join(out) + "\n"


def generate(readme: str) -> str:
    cli = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-readme-generator.sh")], capture_output=True, text=True, check=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        values, out = Path(tmp) / "values.yaml", Path(tmp) / "README.md"
        values.write_text(fold_enums((CHART / "values.yaml").read_text()))
        out.write_text(readme)
        proc = subprocess.run([cli, "-v", str(values), "-r", str(out)], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            sys.exit(f"readme-generator failed:\n{proc.stdout}\n{proc.stderr}")
        return out.read_text()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if README.md differs from what would be written")
    args = parser.parse_args()
    path = CHART / "README.md"
    current = path.read_text()
    fresh = generate(current)
    if args.check:
        if fresh != current:
            print(f"{path} is stale; run python helm/tools/gen_readme.py", file=sys.stderr)
            return 1
        return 0
    path.write_text(fresh)
    return 0


if __name__ == "__main__":
    if shutil.which("bash") is None:
        sys.exit("bash is needed to install readme-generator")
    sys.exit(main())
