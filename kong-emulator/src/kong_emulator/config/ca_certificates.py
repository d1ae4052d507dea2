"""`ca_certificates` entities of kong.yml, checked as kong/db/schema/entities/ca_certificates.lua checks them.

A CA certificate is one PEM certificate (`cert`, required; typedefs.certificate → "invalid certificate: ..."), not
expired and with the "CA" basic constraint (ca_certificates.lua:42-66). Services name them by id in
`ca_certificates` (services.lua:47); a missing id is no load error -- Kong finds out per request
(runloop/certificate.lua:395-410) and the upstream handshake then has no trust store (runloop/upstream_ssl.lua:65-76).
"""

from __future__ import annotations

import datetime
import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

from cryptography import x509

from kong_emulator.config.errors import ConfigError, entity_where

CERT_TAG = "-----BEGIN CERTIFICATE-----"
NAMESPACE = uuid.UUID("a3c1a0f2-6f0e-5b8e-9a55-7c0d3b1e2f41")  # generated ids: stable across restarts


def load_ca_certificates(items: Any) -> dict[str, str]:
    """The collection → {id: PEM}; a ConfigError names the entity and field as Kong's loader would."""
    if not isinstance(items, list):
        raise ConfigError("expected an array", where="in declarative config", field="ca_certificates")
    out: dict[str, str] = {}
    for i, item in enumerate(items):
        where = entity_where("ca_certificates", None, f"ca_certificates[{i}]")
        ident, pem = _one(item, where)
        if ident in out:
            raise ConfigError(
                f"uniqueness violation: 'ca_certificates' entity with primary key set to '{ident}' already declared",
                where=where,
            )
        out[ident] = pem
    return out


def _one(item: Any, where: str) -> tuple[str, str]:
    if not isinstance(item, Mapping):
        raise ConfigError("expected a record", where=where)
    unknown = set(item) - {"id", "cert", "cert_digest", "tags", "created_at", "updated_at", "_comment", "_ignore"}
    if unknown:
        raise ConfigError("unknown field", where=where, field=sorted(unknown)[0])
    pem = item.get("cert")
    if pem is None:
        raise ConfigError("required field missing", where=where, field="cert")
    if not isinstance(pem, str):
        raise ConfigError("expected a string", where=where, field="cert")
    seen = pem.find(CERT_TAG)
    if seen >= 0 and pem.find(CERT_TAG, seen + len(CERT_TAG) + 1) >= 0:
        raise ConfigError("please submit only one certificate at a time", where=where)
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise ConfigError(f"invalid certificate: {exc}", where=where, field="cert") from None
    if cert.not_valid_after_utc < datetime.datetime.now(datetime.UTC):
        raise ConfigError('certificate expired, "Not After" time is in the past', where=where)
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise ConfigError(
            'certificate does not appear to be a CA because it is missing the "CA" basic constraint', where=where
        )
    ident = item.get("id")
    if ident is not None:
        try:
            ident = str(uuid.UUID(str(ident)))
        except ValueError:
            raise ConfigError("expected a valid UUID", where=where, field="id") from None
    else:
        ident = str(uuid.uuid5(NAMESPACE, hashlib.sha256(pem.encode()).hexdigest()))
    return ident, pem
