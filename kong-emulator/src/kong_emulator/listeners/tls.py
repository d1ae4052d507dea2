"""TLS on `proxy_listen` entries flagged `ssl`, configured as Kong 3.9 configures nginx.

- Certificates: `ssl_cert` / `ssl_cert_key` (arrays: one key per certificate, e.g. an RSA and an ECDSA pair), each a
  path, PEM text or base64 of PEM (`kong/conf_loader`). When neither is set Kong generates its default pair in the
  prefix (`kong/cmd/utils/prefix_handler.lua` `gen_default_ssl_cert`): `<prefix>/ssl/kong-default.crt|.key` (RSA
  2048) and `kong-default-ecdsa.crt|.key` (P-256), self-signed, `C=US, ST=California, L=San Francisco, O=Kong,
  OU=IT Department, CN=localhost`, 20 years, not a CA, extendedKeyUsage serverAuth+clientAuth, a subject key id.
  Existing files are reused, as Kong does.
- Protocols and ciphers: `ssl_cipher_suite` (default `intermediate`) picks Mozilla's suite
  (`kong/conf_loader/constants.lua` CIPHER_SUITES) and overrides `ssl_protocols`; only `custom` uses `ssl_protocols`
  and `ssl_ciphers`. `ssl_prefer_server_ciphers` and `ssl_session_tickets` follow the same rules.
- `http2` on a listener: Kong speaks HTTP/2 there; the emulator serves HTTP/1.1 only (ALPN `http/1.1`), logged.

`local_ca()` and `issue_cert()` are not Kong: a small CA and server certificates for `make run` and the tests (the
proxy's listener, and the upstream services whose certificates Kong verifies), so clients can verify them with
`--cacert` (Kong's default certificate has no subjectAltName, which hostname-checking clients refuse).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kong_emulator.config.errors import ConfigError
from kong_emulator.runloop.proxy import Proxy

WHERE = "in kong.conf"

# kong/conf_loader/constants.lua (Kong 3.9), Mozilla Server Side TLS 5.7
_INTERMEDIATE = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)
_OLD = (
    _INTERMEDIATE + ":ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:"
    "ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES256-SHA384:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA:"
    "DHE-RSA-AES128-SHA256:DHE-RSA-AES256-SHA256:AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA256:AES256-SHA256:"
    "AES128-SHA:AES256-SHA:DES-CBC3-SHA"
)
CIPHER_SUITES: dict[str, dict] = {
    "modern": {"protocols": "TLSv1.3", "ciphers": None, "prefer_server_ciphers": "off"},
    "intermediate": {"protocols": "TLSv1.2 TLSv1.3", "ciphers": _INTERMEDIATE, "prefer_server_ciphers": "off"},
    "old": {"protocols": "TLSv1 TLSv1.1 TLSv1.2 TLSv1.3", "ciphers": _OLD, "prefer_server_ciphers": "on"},
    "fips": {"protocols": "TLSv1.2", "ciphers": "TLSv1.2+FIPS:kRSA+FIPS:!eNULL:!aNULL", "prefer_server_ciphers": "on"},
}
PROTOCOLS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
DEFAULT_CERTS = (
    ("kong-default.crt", "kong-default.key", "rsa"),
    ("kong-default-ecdsa.crt", "kong-default-ecdsa.key", "ec"),
)
_KONG_NAME = (("C", "US"), ("ST", "California"), ("L", "San Francisco"), ("O", "Kong"), ("OU", "IT Department"),
              ("CN", "localhost"))  # fmt: skip


@dataclass(frozen=True)
class TLSSettings:
    """What nginx's `ssl_*` directives would say for the proxy listeners."""

    certs: tuple[tuple[str, str], ...]  # (certificate file, key file) pairs
    protocols: tuple[str, ...]
    ciphers: str | None
    prefer_server_ciphers: bool
    session_tickets: bool
    generated: bool = False  # Kong's default certificate (no ssl_cert configured)


def settings_from_conf(raw: Mapping[str, str], prefix: str | os.PathLike) -> TLSSettings:
    """The proxy's TLS settings from kong.conf's string table (defaults already merged); generates Kong's default
    certificate in `<prefix>/ssl/` when no `ssl_cert`/`ssl_cert_key` is set. Raises ConfigError with Kong's words."""
    suite_name = raw.get("ssl_cipher_suite", "intermediate")
    if suite_name == "custom":
        protocols = raw.get("ssl_protocols", "TLSv1.1 TLSv1.2 TLSv1.3")
        ciphers = _unset(raw.get("ssl_ciphers"))
        prefer = raw.get("ssl_prefer_server_ciphers", "on")
    elif suite_name in CIPHER_SUITES:
        suite = CIPHER_SUITES[suite_name]
        protocols, ciphers, prefer = suite["protocols"], suite["ciphers"], suite["prefer_server_ciphers"]
    else:
        raise ConfigError(f"Undefined cipher suite {suite_name}", where=WHERE)
    names = tuple(protocols.split())
    bad = [p for p in names if p not in PROTOCOLS]
    if bad or not names:
        raise ConfigError(f"ssl_protocols: invalid protocol '{bad[0] if bad else protocols}'", where=WHERE)
    certs, generated = _cert_pairs(raw, Path(prefix))
    return TLSSettings(
        certs=certs,
        protocols=names,
        ciphers=ciphers,
        prefer_server_ciphers=prefer == "on",
        session_tickets=raw.get("ssl_session_tickets", "on") == "on",
        generated=generated,
    )


def server_context(settings: TLSSettings) -> ssl.SSLContext:
    """An SSLContext for a proxy listener; a ConfigError names what OpenSSL refused."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    versions = sorted(PROTOCOLS[p] for p in settings.protocols)
    ctx.minimum_version, ctx.maximum_version = versions[0], versions[-1]
    legacy = versions[0] < ssl.TLSVersion.TLSv1_2  # OpenSSL 3 refuses TLS < 1.2 unless the security level is 0
    ciphers = settings.ciphers or ("DEFAULT" if legacy else None)
    if ciphers:
        try:
            ctx.set_ciphers(ciphers + (":@SECLEVEL=0" if legacy else ""))
        except ssl.SSLError as exc:
            raise ConfigError(f"ssl_ciphers: no usable cipher in '{ciphers}' ({exc.reason})", where=WHERE) from None
    if settings.prefer_server_ciphers:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if not settings.session_tickets:
        ctx.options |= ssl.OP_NO_TICKET
    ctx.set_alpn_protocols(["http/1.1"])
    for cert, key in settings.certs:
        try:
            ctx.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"ssl_cert: failed loading certificate from {cert} ({exc})", where=WHERE) from None
    return ctx


def _unset(value: str | None) -> str | None:
    return None if value is None or value in ("", "NONE") else value


def _array(value: str | None) -> list[str]:
    value = _unset(value)
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _cert_pairs(raw: Mapping[str, str], prefix: Path) -> tuple[tuple[tuple[str, str], ...], bool]:
    certs, keys = _array(raw.get("ssl_cert")), _array(raw.get("ssl_cert_key"))
    if not certs and not keys:
        return tuple(generate_kong_default_certs(prefix)), True
    if certs and not keys:
        raise ConfigError("ssl_cert_key must be specified", where=WHERE)
    if keys and not certs:
        raise ConfigError("ssl_cert must be specified", where=WHERE)
    if len(certs) != len(keys):
        raise ConfigError(
            f"ssl_cert was specified {len(certs)} times while ssl_cert_key was specified {len(keys)} times",
            where=WHERE,
        )
    pairs = []
    for n, (cert, key) in enumerate(zip(certs, keys, strict=True)):
        pairs.append(
            (
                _materialise(cert, prefix, f"ssl-cert-{n}.crt", "ssl_cert", "failed loading certificate from"),
                _materialise(key, prefix, f"ssl-cert-{n}.key", "ssl_cert_key", "failed loading key from"),
            )
        )
    return tuple(pairs), False


def _materialise(value: str, prefix: Path, name: str, key: str, reason: str) -> str:
    """A path is used as is; PEM text or base64 of PEM (Kong accepts both) is written into `<prefix>/ssl/`."""
    if os.path.exists(value):
        return value
    text = value
    if "-----BEGIN" not in text:
        try:
            text = base64.b64decode(value, validate=True).decode()
        except ValueError:
            text = ""
    if "-----BEGIN" not in text:
        raise ConfigError(f"{key}: {reason} {value}", where=WHERE)
    out = prefix / "ssl" / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}-{name}"
    out.parent.mkdir(parents=True, exist_ok=True)
    if key.endswith("_key"):
        _write_private(out, text.encode())
    else:
        out.write_text(text)
    return str(out)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def generate_kong_default_certs(prefix: str | os.PathLike) -> list[tuple[str, str]]:
    """Kong's `gen_default_ssl_cert` for the proxy: an RSA and an ECDSA pair in `<prefix>/ssl/`, kept if present."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ssl_dir = Path(prefix) / "ssl"
    ssl_dir.mkdir(parents=True, exist_ok=True)
    oids = {
        "C": NameOID.COUNTRY_NAME,
        "ST": NameOID.STATE_OR_PROVINCE_NAME,
        "L": NameOID.LOCALITY_NAME,
        "O": NameOID.ORGANIZATION_NAME,
        "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
        "CN": NameOID.COMMON_NAME,
    }
    name = x509.Name([x509.NameAttribute(oids[k], v) for k, v in _KONG_NAME])
    pairs = []
    for crt_name, key_name, kind in DEFAULT_CERTS:
        crt, key = ssl_dir / crt_name, ssl_dir / key_name
        pairs.append((str(crt), str(key)))
        if crt.exists() or key.exists():  # Kong generates only when neither file exists
            continue
        private = rsa.generate_private_key(65537, 2048) if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(private.public_key())
            .serial_number(int.from_bytes(os.urandom(16), "big") >> 1)
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=20 * 365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(private.public_key()), critical=False)
            .sign(private, _sha256())
        )
        _write_private(key, _pem_key(private))
        crt.write_bytes(_pem_cert(cert))
    return pairs


@dataclass(frozen=True)
class LocalCA:
    """Files written by `local_ca()`: trust `ca_cert`; give `cert`/`key` to the server (`ssl_cert`/`ssl_cert_key`).
    `ca_key` signs more server certificates (`issue_cert`)."""

    ca_cert: Path
    cert: Path
    key: Path

    @property
    def ca_key(self) -> Path:
        return self.ca_cert.with_suffix(".key")


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def local_ca(directory: str | os.PathLike, hosts: tuple[str, ...] = LOCAL_HOSTS) -> LocalCA:
    """A throw-away CA and a server certificate for `hosts` (DNS names and IPs in subjectAltName), reused when the
    files already exist and the server certificate still has a day to live."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = LocalCA(out / "ca.crt", out / "server.crt", out / "server.key")
    now = datetime.datetime.now(datetime.UTC)
    if all(p.exists() for p in (paths.ca_cert, paths.ca_key, paths.cert, paths.key)):
        existing = x509.load_pem_x509_certificate(paths.cert.read_bytes())
        if existing.not_valid_after_utc > now + datetime.timedelta(days=1):
            return paths
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "StoryVerse local development CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # keyCertSign, cRLSign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, _sha256())
    )
    _write_private(paths.ca_key, _pem_key(ca_key))
    paths.ca_cert.write_bytes(_pem_cert(ca))
    _write_leaf(paths, paths.cert, paths.key, hosts)
    return paths


def issue_cert(ca: LocalCA, name: str, hosts: tuple[str, ...] = LOCAL_HOSTS) -> tuple[Path, Path]:
    """`<name>.crt` / `<name>.key` next to the CA: a server certificate for `hosts` signed by `ca` (the auth service,
    the backends), reused while it has a day to live and was signed by this CA."""
    from cryptography import x509

    cert, key = ca.ca_cert.with_name(f"{name}.crt"), ca.ca_cert.with_name(f"{name}.key")
    if cert.exists() and key.exists():
        existing = x509.load_pem_x509_certificate(cert.read_bytes())
        issuer = x509.load_pem_x509_certificate(ca.ca_cert.read_bytes())
        fresh = existing.not_valid_after_utc > datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
        if fresh and existing.issuer == issuer.subject and _signed_by(existing, issuer):
            return cert, key
    _write_leaf(ca, cert, key, hosts)
    return cert, key


def _signed_by(cert, issuer) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _write_leaf(ca: LocalCA, cert_path: Path, key_path: Path, hosts: tuple[str, ...]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    issuer = x509.load_pem_x509_certificate(ca.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.ca_key.read_bytes(), password=None)
    server_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(issuer.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=397))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, _sha256())
    )
    _write_private(key_path, _pem_key(server_key))
    cert_path.write_bytes(_pem_cert(server))


def _sha256():
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def _pem_key(private) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


class HTTPSProxy(Proxy):
    """The proxy handler of an `ssl` listener: the request's scheme is https (Kong's `ngx.var.scheme`), so routes
    restricted to https match and the upstream gets `X-Forwarded-Proto: https` and this listener's port."""

    def _realip(self, creq):  # the one hook between building the client request and using it
        creq.scheme = "https"
        return super()._realip(creq)
