"""What the rendered chart promises operators: the seed's workloads with their resources and zone spread, scaling,
disruption budgets, locked-down containers, network isolation, one plugin server per plugin, TLS 1.2+, secrets."""

from __future__ import annotations

import pytest
from helm_support import containers, documents, find, pod_spec

# The seed names three services (API Gateway, Authentication, Rate Limiting) without figures; these are the chart's
# numbers (values.yaml), asserted here so a change to them is deliberate.
SEED = {
    ("gateway", "kong"): {"requests": {"cpu": "1000m", "memory": "1Gi"}, "limits": {"cpu": "2000m", "memory": "2Gi"}},
    ("gateway", "rate-limiting"): {
        "requests": {"cpu": "250m", "memory": "128Mi"},
        "limits": {"cpu": "1000m", "memory": "256Mi"},
    },
    ("auth", "auth"): {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "1000m", "memory": "1Gi"}},
}


@pytest.fixture
def default(renders):
    return documents(renders["default-values"])


@pytest.fixture
def all_docs(renders):
    return {name: documents(text) for name, text in renders.items()}


@pytest.mark.parametrize(("deployment", "container"), SEED)
def test_seed_resources(default, deployment, container):
    assert containers(find(default, "Deployment", deployment))[container]["resources"] == SEED[deployment, container]


@pytest.mark.parametrize("deployment", ["gateway", "auth"])
def test_zone_and_host_spread(default, deployment):
    doc = find(default, "Deployment", deployment)
    pod_labels = doc["spec"]["template"]["metadata"]["labels"]
    zone, host = pod_spec(doc)["topologySpreadConstraints"]
    assert zone["topologyKey"] == "topology.kubernetes.io/zone"
    assert (zone["maxSkew"], zone["whenUnsatisfiable"], zone["minDomains"]) == (1, "DoNotSchedule", 3)
    assert host["topologyKey"] == "kubernetes.io/hostname"
    assert (host["maxSkew"], host["whenUnsatisfiable"]) == (1, "ScheduleAnyway")
    for constraint in (zone, host):
        assert constraint["labelSelector"]["matchLabels"].items() <= pod_labels.items()
        assert constraint["matchLabelKeys"] == ["pod-template-hash"]


def test_rate_limiting_is_its_own_container_in_every_gateway_pod(default):
    sidecar = containers(find(default, "Deployment", "gateway"))["rate-limiting"]
    assert sidecar["restartPolicy"] == "Always"  # native sidecar: up before Kong, down after it
    assert "/opt/storyverse/plugins/sv-quota.py" in sidecar["command"][2]
    assert sidecar["args"][-2:] == ["-p", "/kong_prefix/"]
    assert sidecar["startupProbe"]["exec"]["command"] == ["test", "-S", "/kong_prefix/sv-quota.sock"]


def test_hpas_cover_the_seed_scaling_scenarios(default):
    gateway = find(default, "HorizontalPodAutoscaler", "gateway")
    auth = find(default, "HorizontalPodAutoscaler", "auth")
    metrics = [m["containerResource"] for m in gateway["spec"]["metrics"]]
    watched = {m["container"]: m["target"] for m in metrics}
    assert watched == {
        "kong": {"type": "Utilization", "averageUtilization": 65},
        "rate-limiting": {"type": "Utilization", "averageUtilization": 70},
    }
    # viral sharing and registration spikes: scale up at once; evening peak: scale down slowly
    for hpa in (gateway, auth):
        assert hpa["spec"]["minReplicas"] >= 3
        assert hpa["spec"]["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 0
        assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
    assert gateway["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 600
    assert (auth["spec"]["minReplicas"], auth["spec"]["maxReplicas"]) == (3, 12)
    assert auth["spec"]["metrics"][0]["containerResource"]["container"] == "auth"


def test_fixed_replicas_without_autoscaling(all_docs):
    docs = all_docs["existing-secrets-values"]
    assert not [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    assert find(docs, "Deployment", "gateway")["spec"]["replicas"] == 4
    assert "rate-limiting" not in containers(find(docs, "Deployment", "gateway"))


@pytest.mark.parametrize("component", ["gateway", "auth"])
def test_pod_disruption_budgets(default, component):
    pdb = find(default, "PodDisruptionBudget", component)
    assert pdb["spec"]["maxUnavailable"] == 1
    pod_labels = find(default, "Deployment", component)["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_every_container_is_non_root_read_only_without_capabilities(all_docs):
    for docs in all_docs.values():
        for doc in docs:
            if doc["kind"] not in ("Deployment", "Job", "Pod"):
                continue
            assert pod_spec(doc)["securityContext"]["runAsNonRoot"] is True
            assert pod_spec(doc)["automountServiceAccountToken"] is False
            for name, c in containers(doc).items():
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True, name
                assert sc["allowPrivilegeEscalation"] is False, name
                assert sc["capabilities"]["drop"] == ["ALL"], name
                assert "resources" in c and c["resources"]["limits"], name


def test_long_running_containers_have_probes(default):
    for component in ("gateway", "auth"):
        for name, c in containers(find(default, "Deployment", component)).items():
            assert "livenessProbe" in c and ("readinessProbe" in c or "startupProbe" in c), name
    kong = containers(find(default, "Deployment", "gateway"))["kong"]
    assert kong["readinessProbe"]["httpGet"]["path"] == "/status/ready"
    assert containers(find(default, "Deployment", "auth"))["auth"]["readinessProbe"]["httpGet"]["path"] == "/readyz"


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container["env"]}


def test_one_dedicated_plugin_server_per_plugin(default):
    env = _env(containers(find(default, "Deployment", "gateway"))["kong"])
    names = env["KONG_PLUGINSERVER_NAMES"].split(",")
    assert env["KONG_PLUGINS"] == "bundled," + ",".join(names)
    for name in names:
        key = name.replace("-", "_").upper()
        entry = f"/opt/storyverse/venv/bin/python3 /opt/storyverse/plugins/{name}.py"
        assert env[f"KONG_PLUGINSERVER_{key}_SOCKET"] == f"/kong_prefix/{name}.sock"
        assert env[f"KONG_PLUGINSERVER_{key}_QUERY_CMD"] == f"{entry} --dump"
        if name == "sv-quota":  # the sidecar runs it: start_cmd omitted = managed externally
            assert f"KONG_PLUGINSERVER_{key}_START_CMD" not in env
        else:
            assert env[f"KONG_PLUGINSERVER_{key}_START_CMD"] == f"{entry} --no-lua-style -p /kong_prefix/"
    assert env["KONG_DATABASE"] == "off" and env["KONG_DECLARATIVE_CONFIG"] == "/kong_dbless/kong.yml"
    assert env["KONG_ADMIN_LISTEN"].startswith("127.0.0.1:")


def test_proxy_tls_is_1_2_or_later_from_a_secret(default):
    gateway = find(default, "Deployment", "gateway")
    env = _env(containers(gateway)["kong"])
    assert env["KONG_SSL_PROTOCOLS"] == "TLSv1.2 TLSv1.3"
    assert "8443 http2 ssl" in env["KONG_PROXY_LISTEN"]
    volumes = {v["name"]: v for v in pod_spec(gateway)["volumes"]}
    assert volumes["proxy-tls"]["secret"]["secretName"] == "storyverse-proxy-tls"
    ports = {p["name"]: p["port"] for p in find(default, "Service", "gateway")["spec"]["ports"]}
    assert ports == {"https": 443}  # plain HTTP is off by default (gateway.service.httpPort: 0)


def test_cert_manager_certificate_fills_the_tls_secret(all_docs):
    docs = all_docs["external-redis-values"]
    (cert,) = [d for d in docs if d["kind"] == "Certificate"]
    gateway = find(docs, "Deployment", "gateway")
    secret = {v["name"]: v for v in pod_spec(gateway)["volumes"]}["proxy-tls"]["secret"]["secretName"]
    assert cert["spec"]["secretName"] == secret
    assert _env(containers(gateway)["kong"])["KONG_SSL_PROTOCOLS"] == "TLSv1.3"
    assert [p["name"] for p in find(docs, "Service", "gateway")["spec"]["ports"]] == ["https"]


def test_only_the_gateway_reaches_the_auth_service(default):
    policy = find(default, "NetworkPolicy", "auth")
    (rule,) = policy["spec"]["ingress"]
    selectors = [p["podSelector"]["matchLabels"] for p in rule["from"] if "podSelector" in p]
    components = [labels["app.kubernetes.io/component"] for labels in selectors]
    assert components == ["gateway", "helm-test"]  # plus Prometheus' namespace for /metrics
    assert [p for p in rule["from"] if "namespaceSelector" in p] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]


def test_postgres_and_redis_are_reached_only_at_their_cidrs(default):
    egress = find(default, "NetworkPolicy", "auth")["spec"]["egress"]
    ip_rules = {
        r["ports"][0]["port"]: [p["ipBlock"]["cidr"] for p in r["to"]] for r in egress if "ipBlock" in r["to"][0]
    }
    assert ip_rules == {
        5432: ["10.0.16.0/20", "10.0.32.0/20", "10.0.48.0/20"],
        6379: ["10.0.64.0/20"],
        587: ["0.0.0.0/0"],  # the SMTP relay (mail.smtp.cidrs: SES has no fixed range)
    }
    gateway_egress = find(default, "NetworkPolicy", "gateway")["spec"]["egress"]
    assert any(r.get("ports") == [{"protocol": "TCP", "port": 6379}] for r in gateway_egress)


def test_existing_secrets_are_referenced_and_no_chart_secret_is_made(all_docs):
    docs = all_docs["existing-secrets-values"]
    assert not [d for d in docs if d["kind"] == "Secret"]
    env = {e["name"]: e for e in containers(find(docs, "Deployment", "auth"))["auth"]["env"]}
    refs = {k: env[k]["valueFrom"]["secretKeyRef"] for k in ("DATABASE_URL", "REDIS_URL", "KEY_ENCRYPTION_KEY")}
    assert refs == {
        "DATABASE_URL": {"name": "storyverse-db", "key": "database-url"},
        "REDIS_URL": {"name": "storyverse-redis", "key": "redis-url"},
        "KEY_ENCRYPTION_KEY": {"name": "storyverse-kek", "key": "kek"},
    }


def test_migrations_run_before_the_auth_pods_with_their_secret(default):
    job = find(default, "Job", "migrations")
    secret = next(d for d in default if d["kind"] == "Secret")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )
    assert containers(job)["migrate"]["command"] == ["sh", "-c", "flask db upgrade && flask keys ensure"]


def test_helm_test_hook_calls_healthz(default):
    pod = find(default, "Pod", "helm-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert containers(pod)["healthz"]["command"][-1] == "http://storyverse-auth:80/healthz"
