"""Kong 3.9.1 TLS towards a `protocol: https` service: kong/runloop/upstream_ssl.lua (tls_verify, tls_verify_depth,
ca_certificates), kong/db/schema/entities/{services,ca_certificates}.lua, nginx_kong.lua:207-208 (proxy_ssl_name
$upstream_host, proxy_ssl_server_name on) and spec/02-integration/05-proxy/18-upstream_tls_spec.lua (a failed
verification is a 502 "An invalid response was received from the upstream server")."""

from __future__ import annotations

import json
import uuid

import pytest
import requests
from kong_emulator.config.ca_certificates import load_ca_certificates
from kong_emulator.config.declarative import load_declarative
from kong_emulator.config.errors import ConfigError
from kong_emulator.testing import EmulatorProcess
from tls_support import HTTPSUpstream, issue

ROOT_ID, OTHER_ID = str(uuid.uuid4()), str(uuid.uuid4())
BAD_GATEWAY = "An invalid response was received from the upstream server"


@pytest.fixture(scope="module")
def pki():
    root = issue("test root", ca=True)
    inter = issue("test intermediate", root, ca=True)
    leaf = issue("localhost", inter, dns=("localhost",))
    return root, inter, leaf, issue("other root", ca=True)


@pytest.fixture(scope="module")
def upstream(pki, tmp_path_factory):
    _, inter, leaf, _ = pki
    up = HTTPSUpstream(tmp_path_factory.mktemp("up"), leaf, inter).start()
    yield up
    up.stop()


def _service(name, url, path, **fields):
    extra = "".join(f"  {k}: {json.dumps(v)}\n" for k, v in fields.items())
    return f"- name: {name}\n  url: {url}\n{extra}  routes:\n  - name: {name}\n    paths: [{path}]\n"


@pytest.fixture(scope="module")
def gw(pki, upstream):
    root, _, _, other = pki
    base = f"https://localhost:{upstream.port}/echo"
    services = [
        _service("ok", base, "/ok", tls_verify=True, ca_certificates=[ROOT_ID]),
        _service("other-ca", base, "/other", tls_verify=True, ca_certificates=[OTHER_ID]),
        _service("no-store", base, "/nostore", tls_verify=True),
        _service("default", base, "/default"),
        _service("depth0", base, "/depth0", tls_verify=True, ca_certificates=[ROOT_ID], tls_verify_depth=0),
        _service("missing-ca", base, "/missing", tls_verify=True, ca_certificates=[str(uuid.uuid4())]),
        _service(
            "by-ip", f"https://127.0.0.1:{upstream.port}/echo", "/byip", tls_verify=True, ca_certificates=[ROOT_ID]
        ),
    ]
    cas = "".join(f"- id: {i}\n  cert: {json.dumps(c.pem)}\n" for i, c in ((ROOT_ID, root), (OTHER_ID, other)))
    yml = '_format_version: "3.0"\nca_certificates:\n' + cas + "services:\n" + "".join(services)
    yml += "  - name: by-ip-preserve\n    paths: [/preserve]\n    preserve_host: true\n"
    with EmulatorProcess(yml, [], strict=True) as gw:
        yield gw


def _get(gw, path, **headers):
    return requests.get(gw.url + path, headers={"Accept": "application/json", **headers}, timeout=10)


def test_verified_against_the_services_ca_certificates(gw, upstream):
    r = _get(gw, "/ok")
    assert r.status_code == 200
    assert upstream.snis[-1] == "localhost"  # SNI = $upstream_host without the port


@pytest.mark.parametrize(
    "path",
    [
        "/other",  # 18-upstream_tls_spec.lua "not allowed through once the CA certificate is updated to other ca"
        "/nostore",  # "turn it on, request is blocked": no store → nothing verifies
        "/depth0",  # "request is not allowed through if depth limit is too low": one intermediate > depth 0
        "/missing",  # certificate.lua:405 "does not exist" → upstream_ssl.lua:69 the store stays unset
        "/byip",  # the name checked is $upstream_host, 127.0.0.1: the certificate names localhost only
    ],
)
def test_a_failed_verification_is_a_502(gw, path):
    r = _get(gw, path)
    assert r.status_code == 502
    assert r.json()["message"] == BAD_GATEWAY


def test_without_tls_verify_kong_does_not_verify(gw):
    # services.lua:45: unset → nginx's proxy_ssl_verify, off unless kong.conf injects nginx_proxy_proxy_ssl_verify
    assert _get(gw, "/default").status_code == 200


def test_the_name_and_sni_follow_the_host_header_sent_upstream(gw, upstream):
    # preserve_host: $upstream_host is the client's Host, so SNI and the name checked are "localhost"
    r = _get(gw, "/preserve", Host="localhost")
    assert r.status_code == 200 and r.json()["host"] == "localhost"
    assert upstream.snis[-1] == "localhost"


def test_the_missing_ca_is_logged_at_crit(gw):
    _get(gw, "/missing")
    assert "unable to get upstream TLS CA store" in gw.output()


def test_global_proxy_ssl_verify_applies_when_the_service_says_nothing(pki, upstream):
    yml = '_format_version: "3.0"\nservices:\n' + _service("d", f"https://localhost:{upstream.port}/echo", "/d")
    with EmulatorProcess(yml, [], conf_extra={"nginx_proxy_proxy_ssl_verify": "on"}) as gw:
        assert _get(gw, "/d").status_code == 502


def test_ca_certificates_are_checked_like_kong(pki):
    root, inter, leaf, _ = pki
    assert load_ca_certificates([{"id": ROOT_ID, "cert": root.pem}]) == {ROOT_ID: root.pem}
    with pytest.raises(ConfigError, match='missing the "CA" basic constraint'):
        load_ca_certificates([{"cert": leaf.pem}])
    with pytest.raises(ConfigError, match="only one certificate at a time"):
        load_ca_certificates([{"cert": root.pem + inter.pem}])
    with pytest.raises(ConfigError, match="invalid certificate"):
        load_ca_certificates([{"cert": "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"}])


def test_tls_fields_on_a_plain_http_service_are_refused():
    # services.lua:63-76: tls_verify, tls_verify_depth, ca_certificates must be null unless protocol is https/tls
    yml = '_format_version: "3.0"\nservices:\n' + _service("p", "http://localhost:1", "/p", tls_verify=True)
    with pytest.raises(ConfigError, match="value must be null"):
        load_declarative(yml, {}, set(), set())


def test_an_unverified_https_service_is_pointed_out_at_start(gw):
    # not Kong's behaviour (Kong is silent): the emulator's own warning, since the product must set tls_verify
    assert "service 'default' is https without tls_verify" in gw.output()
    assert "service 'ok' is https without tls_verify" not in gw.output()
