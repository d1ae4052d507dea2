"""Every ConfigMap the chart renders stays far from Kubernetes' 1 MiB object limit (etcd's request size): the
gateway's kong.yml ConfigMap once sat at 83 % of it with pasted Lua and embedded documents. Rendered with the
repository's kong.yml, as a deployment does (`--set-file gateway.declarativeConfig=kong.yml`), for every ci/ file."""

from __future__ import annotations

import pytest
import yaml
from helm_support import CHART, CI_VALUES, REPO, documents

MAX_CONFIGMAP_BYTES = 512 * 1024


@pytest.mark.parametrize("values", CI_VALUES, ids=[p.stem for p in CI_VALUES])
def test_every_configmap_is_under_half_the_kubernetes_limit(helm, values):
    own = "existingConfigMap" not in values.read_text()  # else the operator's ConfigMap holds kong.yml
    args = ("--set-file", f"gateway.declarativeConfig={REPO / 'kong.yml'}") if own else ()
    out = helm.template("-f", str(values), *args).stdout
    configmaps = [d for d in documents(out) if d["kind"] == "ConfigMap"]
    assert any("kong.yml" in (cm.get("data") or {}) for cm in configmaps) is own
    for cm in configmaps:
        size = len(yaml.safe_dump(cm, allow_unicode=True).encode())  # the object as the API server stores it, ~
        assert size < MAX_CONFIGMAP_BYTES, f"{cm['metadata']['name']}: {size} bytes"


def test_the_check_would_catch_the_old_kong_yml(helm, tmp_path):
    """A kong.yml the size of the pasted-Lua one (865 KB) fails the same measure."""
    big = tmp_path / "kong.yml"
    big.write_text((REPO / "kong.yml").read_text() + "# " + "x" * (865 * 1024) + "\n")
    out = helm.template("-f", str(CHART / "ci" / "default-values.yaml"), "--set-file",
                        f"gateway.declarativeConfig={big}").stdout  # fmt: skip
    sizes = [len(yaml.safe_dump(cm).encode()) for cm in documents(out) if cm["kind"] == "ConfigMap"]
    assert max(sizes) >= MAX_CONFIGMAP_BYTES
