"""The NetworkPolicies admit exactly the TLS hops the chart wires (issue 18): the gateway → the auth and rate limiting
Services, the rate limiting service → the auth service's JWKS over https, the `helm test` pod → the auth service.

Evaluated as Kubernetes does (networking.k8s.io/v1 NetworkPolicy): a connection to a Service is a connection to a pod
of its selector on the port the Service's targetPort names in that pod (the policy sees the port after the Service's
translation: 443 → gunicorn's containerPort); it passes when the client's egress AND the server's ingress allow it.
The pairs are read from the rendered Service and Deployment objects, never from hard-coded numbers."""

from __future__ import annotations

import pytest
from helm_support import CI_VALUES, NAMESPACE, documents, find, pod_spec

DEFAULT = next(p for p in CI_VALUES if p.name == "default-values.yaml")
NS_LABELS = {"kubernetes.io/metadata.name": NAMESPACE}
ALLOWED = [("gateway", "auth"), ("gateway", "rate-limiting"), ("rate-limiting", "auth"), ("helm-test", "auth")]
DENIED = [
    ("auth", "rate-limiting"),
    ("helm-test", "rate-limiting"),
    ("stranger", "auth"),
    ("stranger", "rate-limiting"),
]


def matches(selector: dict, labels: dict) -> bool:
    assert "matchExpressions" not in selector, "extend this evaluator for matchExpressions"
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def peer_admits(peer: dict, pod_labels: dict) -> bool:
    """A from/to peer against a pod of this namespace (the chart's peers are pods or namespaces, ipBlocks are the
    databases' and never a pod's)."""
    if "ipBlock" in peer:
        return False
    namespace_ok = "namespaceSelector" not in peer or matches(peer["namespaceSelector"], NS_LABELS)
    pod_ok = "podSelector" not in peer or matches(peer["podSelector"], pod_labels)
    return namespace_ok and pod_ok


def port_admits(rule_ports: list | None, port: int, port_names: dict[str, int]) -> bool:
    if not rule_ports:
        return True
    for p in rule_ports:
        number = port_names.get(p["port"]) if isinstance(p["port"], str) else p["port"]
        if p.get("protocol", "TCP") == "TCP" and number is not None and number <= port <= p.get("endPort", number):
            return True
    return False


def allowed(policies: list[dict], direction: str, pod: dict, peer: dict, port: int, port_names: dict) -> bool:
    """Kubernetes' rule: not isolated (no policy of this type selects the pod) → allowed; else any rule admits."""
    kind, peers = ("Ingress", "from") if direction == "ingress" else ("Egress", "to")
    selecting = [p for p in policies if kind in p["spec"]["policyTypes"] and matches(p["spec"]["podSelector"], pod)]
    if not selecting:
        return True
    return any(
        (peers not in rule or any(peer_admits(x, peer) for x in rule[peers]))
        and port_admits(rule.get("ports"), port, port_names)
        for policy in selecting
        for rule in policy["spec"].get(direction, [])
    )


def pods(docs: list[dict]) -> dict[str, tuple[dict, dict[str, int]]]:
    """component → (pod labels, container port name → number)."""
    out = {"stranger": ({"app": "stranger"}, {})}
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Pod"):
            continue
        meta = doc["spec"]["template"]["metadata"] if doc["kind"] == "Deployment" else doc["metadata"]
        names = {p["name"]: p["containerPort"] for c in pod_spec(doc)["containers"] for p in c.get("ports", [])}
        out.setdefault(meta["labels"]["app.kubernetes.io/component"], (meta["labels"], names))
    return out


def hop(docs: list[dict], client: str, server: str) -> tuple[bool, int, int]:
    """Can `client` open the server's Service port? → (allowed, Service port, pod port it lands on)."""
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    all_pods = pods(docs)
    (client_labels, _), (server_labels, server_ports) = all_pods[client], all_pods[server]
    [service_port] = find(docs, "Service", server)["spec"]["ports"]
    target = service_port["targetPort"]
    pod_port = server_ports[target] if isinstance(target, str) else target
    ok = allowed(policies, "egress", client_labels, server_labels, pod_port, server_ports) and allowed(
        policies, "ingress", server_labels, client_labels, pod_port, server_ports
    )
    return ok, service_port["port"], pod_port


@pytest.mark.parametrize("values", [p.stem for p in CI_VALUES])
def test_the_tls_hops_pass_and_nothing_else_reaches_the_services(renders, values):
    docs = documents(renders[values])
    for client, server in ALLOWED:
        ok, service_port, pod_port = hop(docs, client, server)
        assert ok, f"{values}: {client} → {server} Service :{service_port} (pod :{pod_port}) is blocked"
    for client, server in DENIED:
        assert not hop(docs, client, server)[0], f"{values}: {client} reaches {server}"


def test_the_policies_follow_the_ports_the_services_target(helm):
    """Other ports everywhere (the TLS Service ports and gunicorn's): the policies still admit exactly those hops."""
    docs = documents(
        helm.template(
            *("-f", str(DEFAULT)),
            *("--set", "auth.servicePort=8443", "--set", "auth.containerPort=9443"),
            *("--set", "rateLimiting.servicePort=8444", "--set", "rateLimiting.containerPort=9444"),
        ).stdout
    )
    assert hop(docs, "gateway", "auth") == (True, 8443, 9443)
    assert hop(docs, "rate-limiting", "auth") == (True, 8443, 9443)
    assert hop(docs, "gateway", "rate-limiting") == (True, 8444, 9444)
    assert not hop(docs, "auth", "rate-limiting")[0]
