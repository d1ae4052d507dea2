"""What the rendered chart promises operators: the seed's workloads with their resources and zone spread, scaling,
disruption budgets, locked-down containers, network isolation, one plugin server per plugin, TLS 1.2+, secrets."""

from __future__ import annotations

from decimal import Decimal

import pytest
from helm_support import REPO, containers, documents, find, pod_spec

# The seed's three services as it gives them (its EKS Auto Mode Deployments): name, `app` label, container, requests,
# limits, all in the seed's own notation. Quantities are compared by value ("0.5" CPU is "500m").
SEED = {
    "gateway": ("api-gateway-service", "api-gateway", ("0.5", "1Gi"), ("1", "2Gi")),
    "auth": ("authentication-service", "authentication", ("0.5", "1Gi"), ("1", "2Gi")),
    "rate-limiting": ("rate-limiting-service", "rate-limiting", ("0.3", "512Mi"), ("0.5", "1Gi")),
}
DEPLOYMENT = {component: seed[0] for component, seed in SEED.items()}
_SUFFIX = {"m": Decimal("0.001"), "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def quantity(text) -> Decimal:
    """A Kubernetes quantity as a number (only the suffixes these figures use)."""
    text = str(text)
    for suffix, factor in _SUFFIX.items():
        if text.endswith(suffix):
            return Decimal(text.removesuffix(suffix)) * factor
    return Decimal(text)


def deployment(docs: list[dict], component: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == DEPLOYMENT[component]]
    return doc


@pytest.fixture
def default(renders):
    return documents(renders["default-values"])


@pytest.fixture
def all_docs(renders):
    return {name: documents(text) for name, text in renders.items()}


def test_default_values_render_exactly_the_seed_deployments(default):
    names = sorted(d["metadata"]["name"] for d in default if d["kind"] == "Deployment")
    assert names == sorted(DEPLOYMENT.values())


@pytest.mark.parametrize("component", SEED)
def test_seed_names_labels_and_resources(default, component):
    _, app, (req_cpu, req_mem), (lim_cpu, lim_mem) = SEED[component]
    doc = deployment(default, component)
    assert doc["spec"]["selector"]["matchLabels"]["app"] == app
    labels = doc["spec"]["template"]["metadata"]["labels"]
    assert labels["app"] == app
    assert labels["app.kubernetes.io/component"] == component and labels["app.kubernetes.io/part-of"] == "storyverse"
    resources = pod_spec(doc)["containers"][0]
    assert resources["name"] == app  # the seed's container name
    figures = {k: {r: quantity(v) for r, v in resources["resources"][k].items()} for k in ("requests", "limits")}
    assert figures == {
        "requests": {"cpu": quantity(req_cpu), "memory": quantity(req_mem)},
        "limits": {"cpu": quantity(lim_cpu), "memory": quantity(lim_mem)},
    }


@pytest.mark.parametrize("component", SEED)
def test_seed_zone_spread_then_node_spread(default, component):
    doc = deployment(default, component)
    pod_labels = doc["spec"]["template"]["metadata"]["labels"]
    zone, host = pod_spec(doc)["topologySpreadConstraints"]
    assert zone == {
        "maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": {"app": SEED[component][1]}},
    }
    assert host["topologyKey"] == "kubernetes.io/hostname"
    assert (host["maxSkew"], host["whenUnsatisfiable"]) == (1, "ScheduleAnyway")
    assert host["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    assert host["matchLabelKeys"] == ["pod-template-hash"]


@pytest.mark.parametrize("component", SEED)
def test_zone_spread_switches_to_do_not_schedule(all_docs, component):
    """ci/external-redis-values.yaml sets <component>.spread.zoneWhenUnsatisfiable: DoNotSchedule."""
    zone = pod_spec(deployment(all_docs["external-redis-values"], component))["topologySpreadConstraints"][0]
    assert (zone["whenUnsatisfiable"], zone["minDomains"], zone["maxSkew"]) == ("DoNotSchedule", 3, 1)


PLUGIN_SERVERS = ["sv-request-id", "sv-jwt", "sv-rbac", "sv-quota", "sv-quota-log", "sv-expand"]


def test_every_plugin_server_is_its_own_container_in_every_gateway_pod(default):
    spec = pod_spec(deployment(default, "gateway"))
    assert [c["name"] for c in spec["initContainers"]] == [f"{p}-plugin-server" for p in PLUGIN_SERVERS]
    for plugin in PLUGIN_SERVERS:
        sidecar = containers(deployment(default, "gateway"))[f"{plugin}-plugin-server"]
        assert sidecar["restartPolicy"] == "Always"  # native sidecar: up before Kong, down after it
        assert f"/opt/storyverse/plugins/{plugin}.py" in sidecar["command"][2]
        assert sidecar["args"][-2:] == ["-p", "/kong_prefix/"]
        assert sidecar["startupProbe"]["exec"]["command"] == ["test", "-S", f"/kong_prefix/{plugin}.sock"]
        assert {m["mountPath"] for m in sidecar["volumeMounts"]} >= {"/kong_prefix/"}
    busy = {"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"cpu": "1000m", "memory": "256Mi"}}
    light = {"requests": {"cpu": "100m", "memory": "96Mi"}, "limits": {"cpu": "500m", "memory": "192Mi"}}
    figures = {c["name"].removesuffix("-plugin-server"): c["resources"] for c in spec["initContainers"]}
    # sv-rbac: the CPU of busy (docs/capacity.md: its measured CPU per request), the memory of light
    rbac = {"requests": {"cpu": "250m", "memory": "96Mi"}, "limits": {"cpu": "1000m", "memory": "192Mi"}}
    expected = {p: busy if p in ("sv-jwt", "sv-quota") else light for p in PLUGIN_SERVERS}
    assert figures == {**expected, "sv-rbac": rbac}
    ports = {c["name"]: [p["containerPort"] for p in c.get("ports", [])] for c in spec["initContainers"]}
    assert ports["sv-quota-plugin-server"] == [9542] and ports["sv-quota-log-plugin-server"] == [9543]
    sidecars = containers(deployment(default, "gateway"))
    ca = {"SSL_CERT_FILE": "/etc/storyverse/internal-ca/ca.crt"}  # internalTls: sv-jwt's JWKS over https
    env = {e["name"]: e["value"] for e in sidecars["sv-quota-plugin-server"]["env"]}
    assert env == {"SV_QUOTA_METRICS_PORT": "9542", "SV_QUOTA_METRICS_HOST": "0.0.0.0", **ca}
    # sv-quota-log's entry file reads its own variable (kong-plugins/plugins/sv-quota-log.py): abuse detections from
    # 401/403 answers (its log phase) are only scraped when the chart sets that one
    env = {e["name"]: e["value"] for e in sidecars["sv-quota-log-plugin-server"]["env"]}
    assert env == {"SV_QUOTA_LOG_METRICS_PORT": "9543", "SV_QUOTA_METRICS_HOST": "0.0.0.0", **ca}
    served = (REPO / "kong-plugins" / "plugins" / "sv-quota-log.py").read_text()
    assert 'serve_from_env("SV_QUOTA_LOG_METRICS_PORT")' in served


def test_hpas_cover_the_seed_scaling_scenarios(default):
    gateway = find(default, "HorizontalPodAutoscaler", "gateway")
    auth = find(default, "HorizontalPodAutoscaler", "auth")
    rate = find(default, "HorizontalPodAutoscaler", "rate-limiting")
    for component, hpa in (("gateway", gateway), ("auth", auth), ("rate-limiting", rate)):
        assert hpa["spec"]["scaleTargetRef"]["name"] == DEPLOYMENT[component]
    metrics = [m["containerResource"] for m in gateway["spec"]["metrics"]]
    watched = {m["container"]: m["target"] for m in metrics}
    assert watched == {
        "api-gateway": {"type": "Utilization", "averageUtilization": 65},
        **{f"{p}-plugin-server": {"type": "Utilization", "averageUtilization": 65} for p in PLUGIN_SERVERS},
    }
    # viral sharing and registration spikes: scale up at once; evening peak: scale down slowly
    for hpa in (gateway, auth):
        assert hpa["spec"]["minReplicas"] >= 3
        assert hpa["spec"]["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 0
        assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
    assert gateway["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 600
    assert (auth["spec"]["minReplicas"], auth["spec"]["maxReplicas"]) == (3, 13)  # docs/capacity.md
    assert (rate["spec"]["minReplicas"], rate["spec"]["maxReplicas"]) == (3, 6)
    assert rate["spec"]["metrics"][0]["containerResource"]["container"] == "rate-limiting"


def test_registration_spikes_scale_auth_on_cpu_and_request_rate(default):
    """The seed: "EKS AutoMode scales this service based on CPU utilization and request rate"."""
    cpu, rate = find(default, "HorizontalPodAutoscaler", "auth")["spec"]["metrics"]
    assert cpu["containerResource"] == {
        "name": "cpu",
        "container": "authentication",
        "target": {"type": "Utilization", "averageUtilization": 60},
    }
    assert rate == {
        "type": "External",
        "external": {
            "metric": {"name": "storyverse_auth_requests_per_second", "selector": {"matchLabels": {"service": "auth"}}},
            "target": {"type": "AverageValue", "averageValue": "10"},
        },
    }


def test_fixed_replicas_without_autoscaling(all_docs):
    docs = all_docs["existing-secrets-values"]
    assert not [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    assert deployment(docs, "gateway")["spec"]["replicas"] == 4
    assert deployment(docs, "rate-limiting")["spec"]["replicas"] == 2
    # gateway.plugins.sidecars false: Kong starts every plugin server inside the api-gateway container
    assert list(containers(deployment(docs, "gateway"))) == ["api-gateway"]


@pytest.mark.parametrize("component", SEED)
def test_pod_disruption_budgets(default, component):
    pdb = find(default, "PodDisruptionBudget", component)
    assert pdb["spec"]["maxUnavailable"] == 1
    pod_labels = deployment(default, component)["spec"]["template"]["metadata"]["labels"]
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
    for component in SEED:
        for name, c in containers(deployment(default, component)).items():
            if name == "init-db":  # a one-shot init container
                continue
            assert "livenessProbe" in c and ("readinessProbe" in c or "startupProbe" in c), name
    kong = containers(deployment(default, "gateway"))["api-gateway"]
    assert kong["readinessProbe"]["httpGet"]["path"] == "/status/ready"
    auth = containers(deployment(default, "auth"))["authentication"]
    assert auth["readinessProbe"]["httpGet"]["path"] == "/readyz"
    rate = containers(deployment(default, "rate-limiting"))["rate-limiting"]
    assert rate["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert rate["livenessProbe"]["httpGet"]["path"] == "/healthz"


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container["env"]}


def test_one_dedicated_plugin_server_per_plugin(default):
    env = _env(containers(deployment(default, "gateway"))["api-gateway"])
    names = env["KONG_PLUGINSERVER_NAMES"].split(",")
    assert env["KONG_PLUGINS"] == "bundled,sv-edge," + ",".join(names)  # sv-edge: the Lua plugin kong.yml needs
    for name in names:
        key = name.replace("-", "_").upper()
        entry = f"/opt/storyverse/venv/bin/python3 /opt/storyverse/plugins/{name}.py"
        assert env[f"KONG_PLUGINSERVER_{key}_SOCKET"] == f"/kong_prefix/{name}.sock"
        assert env[f"KONG_PLUGINSERVER_{key}_QUERY_CMD"] == f"{entry} --dump"
        # each runs in its own sidecar: start_cmd omitted = managed externally
        assert f"KONG_PLUGINSERVER_{key}_START_CMD" not in env
    assert env["KONG_DATABASE"] == "off" and env["KONG_DECLARATIVE_CONFIG"] == "/kong_dbless/kong.yml"
    assert env["KONG_ADMIN_LISTEN"].startswith("127.0.0.1:")


def test_kong_starts_the_plugin_servers_without_sidecars(all_docs):
    env = _env(containers(deployment(all_docs["existing-secrets-values"], "gateway"))["api-gateway"])
    for name in env["KONG_PLUGINSERVER_NAMES"].split(","):
        entry = f"/opt/storyverse/venv/bin/python3 /opt/storyverse/plugins/{name}.py"
        key = name.replace("-", "_").upper()
        assert env[f"KONG_PLUGINSERVER_{key}_START_CMD"] == f"{entry} --no-lua-style -p /kong_prefix/"


def test_proxy_tls_is_1_2_or_later_from_a_secret(default):
    gateway = deployment(default, "gateway")
    env = _env(containers(gateway)["api-gateway"])
    assert env["KONG_SSL_PROTOCOLS"] == "TLSv1.2 TLSv1.3"
    assert "8443 http2 ssl" in env["KONG_PROXY_LISTEN"]
    volumes = {v["name"]: v for v in pod_spec(gateway)["volumes"]}
    assert volumes["proxy-tls"]["secret"]["secretName"] == "storyverse-proxy-tls"
    ports = {p["name"]: p["port"] for p in find(default, "Service", "gateway")["spec"]["ports"]}
    assert ports == {"https": 443}  # plain HTTP is off by default (gateway.service.httpPort: 0)


def test_cert_manager_certificate_fills_the_tls_secret(all_docs):
    docs = all_docs["external-redis-values"]
    (cert,) = [d for d in docs if d["kind"] == "Certificate" and d["metadata"]["name"].endswith("-gateway-tls")]
    gateway = deployment(docs, "gateway")
    secret = {v["name"]: v for v in pod_spec(gateway)["volumes"]}["proxy-tls"]["secret"]["secretName"]
    assert cert["spec"]["secretName"] == secret
    assert _env(containers(gateway)["api-gateway"])["KONG_SSL_PROTOCOLS"] == "TLSv1.3"
    assert [p["name"] for p in find(docs, "Service", "gateway")["spec"]["ports"]] == ["https"]


def test_only_the_gateway_reaches_the_auth_service(default):
    policy = find(default, "NetworkPolicy", "auth")
    (rule,) = policy["spec"]["ingress"]
    selectors = [p["podSelector"]["matchLabels"] for p in rule["from"] if "podSelector" in p]
    components = [labels["app.kubernetes.io/component"] for labels in selectors]
    assert components == ["gateway", "rate-limiting", "helm-test"]  # plus Prometheus' namespace for /metrics
    assert [p for p in rule["from"] if "namespaceSelector" in p] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]


def test_only_the_gateway_reaches_the_rate_limiting_service(default):
    policy = find(default, "NetworkPolicy", "rate-limiting")
    (rule,) = policy["spec"]["ingress"]
    selectors = [p["podSelector"]["matchLabels"] for p in rule["from"] if "podSelector" in p]
    assert [labels["app"] for labels in selectors] == ["api-gateway"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    egress = policy["spec"]["egress"]
    ports = sorted(r["ports"][0]["port"] for r in egress)
    assert ports == [53, 5432, 6379, 8080]  # DNS, PostgreSQL, Redis, the auth service's JWKS
    gateway_egress = find(default, "NetworkPolicy", "gateway")["spec"]["egress"]
    apps = [r["to"][0].get("podSelector", {}).get("matchLabels", {}).get("app") for r in gateway_egress]
    to_rate = [r for r, app in zip(gateway_egress, apps, strict=True) if app == "rate-limiting"]
    assert to_rate and to_rate[0]["ports"] == [{"protocol": "TCP", "port": 8080}]


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
    env = {e["name"]: e for e in containers(deployment(docs, "auth"))["authentication"]["env"]}
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
    assert containers(pod)["healthz"]["command"][-1] == "https://storyverse-auth:443/healthz"  # internalTls


def _fluent_bit_sections(conf: str) -> list[tuple[str, dict[str, str]]]:
    sections: list[tuple[str, dict[str, str]]] = []
    for line in conf.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            sections.append((line[1:-1], {}))
        elif line and sections:
            key, _, value = line.partition(" ")
            sections[-1][1][key] = value.strip()
    return sections


def test_cloudwatch_logging_renders_a_fluent_bit_configuration_when_enabled(all_docs, default):
    """The seed's "CloudWatch for logging": Fluent Bit tails this namespace's containers, keeps this release's pods
    and writes to CloudWatch Logs, one stream per service, pod and container."""
    assert not [d for d in default if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("fluent-bit")]
    cm = find(all_docs["external-redis-values"], "ConfigMap", "fluent-bit")
    sections = _fluent_bit_sections(cm["data"]["fluent-bit.conf"])
    (tail,) = [s for name, s in sections if name == "INPUT"]
    assert tail["Name"] == "tail" and tail["Path"] == "/var/log/containers/*_storyverse_*.log"
    filters = {s["Name"]: s for name, s in sections if name == "FILTER"}
    assert filters["kubernetes"]["Merge_Log"] == "On"  # the services' JSON lines become fields
    assert filters["grep"]["Regex"] == "$kubernetes['labels']['app.kubernetes.io/instance'] ^storyverse$"
    (out,) = [s for name, s in sections if name == "OUTPUT"]
    assert (out["Name"], out["region"], out["log_group_name"]) == (
        "cloudwatch_logs",
        "eu-central-1",
        "/storyverse/prod",
    )
    assert out["log_stream_template"].startswith("$kubernetes['labels']['app'].")
    assert "[PARSER]" in cm["data"]["parsers.conf"]
