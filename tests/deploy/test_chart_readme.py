"""The chart README's parameter tables are generated from values.yaml's `## @param` lines by bitnami's
readme-generator-for-helm (installed from npm by scripts/install-readme-generator.sh, then run offline)."""

from __future__ import annotations

import subprocess
import sys

from helm_support import CHART, REPO

GEN = REPO / "helm" / "tools" / "gen_readme.py"


def test_chart_readme_is_generated_from_the_param_lines():
    proc = subprocess.run([sys.executable, str(GEN), "--check"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_param_is_in_the_readme_with_enums_spelled_out():
    readme = (CHART / "README.md").read_text()
    for line in (CHART / "values.yaml").read_text().splitlines():
        if line.strip().startswith("## @param "):
            assert f"| `{line.split()[2]}` " in readme
    assert "(one of: starttls, tls)" in readme


def test_a_stale_readme_is_caught(tmp_path, monkeypatch):
    sys.path.insert(0, str(GEN.parent))
    import gen_readme

    monkeypatch.setattr(gen_readme, "CHART", tmp_path)
    (tmp_path / "values.yaml").write_text((CHART / "values.yaml").read_text())
    (tmp_path / "README.md").write_text(
        (CHART / "README.md").read_text().replace("`mail.smtp.port`", "`mail.smtp.prt`")
    )
    monkeypatch.setattr(sys, "argv", ["gen_readme.py", "--check"])
    assert gen_readme.main() == 1
