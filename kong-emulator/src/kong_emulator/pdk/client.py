"""``kong.client.*`` (kong/pdk/client.lua, 3.x), ``kong.ip.is_trusted`` and ``kong.router.*``."""

from __future__ import annotations

import re

from kong_emulator.config.entities import Consumer
from kong_emulator.pdk.base import AUTH_AND_LATER, ROUTER_PHASES, Call, LuaError, is_str, lua_str, to_lua

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


def get_ip(c: Call, *_):
    """``ngx.var.realip_remote_addr or remote_addr``: the direct peer."""
    c.need_request()
    return c.ctx.request.client_ip


def get_forwarded_ip(c: Call, *_):
    """``ngx.var.remote_addr`` after the realip module (trusted_ips / real_ip_header)."""
    c.need_request()
    return c.ctx.request.forwarded_ip


def get_port(c: Call, *_):
    c.need_request()
    return c.ctx.request.client_port


def get_consumer(c: Call, *_):
    """``ngx.ctx.authenticated_consumer``: the table set by authenticate, or the consumer entity."""
    c.check(AUTH_AND_LATER)
    consumer = c.ctx.consumer
    if consumer is None:
        return None
    raw = c.ctx.nginx_ctx.get("authenticated_consumer")
    if isinstance(raw, dict) and raw.get("id") == consumer.id:
        return raw
    return consumer.to_kong()


def get_credential(c: Call, *_):
    c.check(AUTH_AND_LATER)
    return c.ctx.credential


def load_consumer(c: Call, consumer_id=None, by_username=None, *_):
    """A DB select by id, then by username when asked; a non-UUID without ``by_username`` is a Lua error."""
    c.check(AUTH_AND_LATER)
    if not is_str(consumer_id):
        raise LuaError("consumer_id must be a string")
    consumer_id = lua_str(consumer_id)
    is_uuid = bool(_UUID.match(consumer_id))
    if not is_uuid and not by_username:
        raise LuaError("cannot load a consumer with an id that is not a uuid")
    consumers = c.env.all_consumers().values()
    if is_uuid:
        for consumer in consumers:
            if consumer.id == consumer_id:
                return consumer.to_kong()
    if by_username:
        for consumer in consumers:
            if consumer.username == consumer_id:
                return consumer.to_kong()
    return None


def authenticate(c: Call, consumer=None, credential=None, *_):
    """Access only; sets ``ngx.ctx.authenticated_consumer``/``_credential`` (consumer-scoped plugins follow)."""
    c.check(frozenset({"access"}))
    if not (consumer is None or isinstance(consumer, dict | list)):
        raise LuaError("consumer must be a table or nil")
    if not (credential is None or isinstance(credential, dict | list)):
        raise LuaError("credential must be a table or nil")
    if consumer is None and credential is None:
        raise LuaError("either credential or consumer must be provided")
    consumer = to_lua(consumer) if consumer is not None else None
    credential = to_lua(credential) if credential is not None else None
    ctx = c.ctx
    ctx.nginx_ctx["authenticated_consumer"] = consumer
    ctx.nginx_ctx["authenticated_credential"] = credential
    ctx.credential = credential
    ctx.consumer = _as_consumer(consumer)


def _as_consumer(table) -> Consumer | None:
    if not isinstance(table, dict) or not table.get("id"):
        return None
    return Consumer(
        id=str(table["id"]),
        username=table.get("username"),
        custom_id=table.get("custom_id"),
        tags=table.get("tags") or None,
    )


def get_protocol(c: Call, allow_terminated=None, *_):
    """The route's only protocol, else http/https from the scheme (or trusted X-Forwarded-Proto)."""
    c.check(AUTH_AND_LATER)
    route = c.ctx.route
    if route is None:
        return None
    if len(route.protocols) == 1:
        return route.protocols[0]
    c.need_request(AUTH_AND_LATER)
    req = c.ctx.request
    if req.scheme == "https":
        return "https"
    if allow_terminated and c.env.is_trusted(req.client_ip):
        proto = (req.headers.get("X-Forwarded-Proto") or "").lower()
        return "https" if proto == "https" else "http"
    return "http"


def is_trusted(c: Call, address=None, *_):
    if not is_str(address):
        raise LuaError("address must be a string")
    return c.env.is_trusted(lua_str(address))


def get_route(c: Call, *_):
    c.check(ROUTER_PHASES)
    return c.ctx.route.to_kong() if c.ctx.route else None


def get_service(c: Call, *_):
    c.check(ROUTER_PHASES)
    return c.ctx.service.to_kong() if c.ctx.service else None


FUNCTIONS = {
    "kong.client.get_ip": get_ip,
    "kong.client.get_forwarded_ip": get_forwarded_ip,
    "kong.client.get_port": get_port,
    "kong.client.get_forwarded_port": get_port,
    "kong.client.get_consumer": get_consumer,
    "kong.client.get_credential": get_credential,
    "kong.client.load_consumer": load_consumer,
    "kong.client.authenticate": authenticate,
    "kong.client.get_protocol": get_protocol,
    "kong.ip.is_trusted": is_trusted,
    "kong.router.get_route": get_route,
    "kong.router.get_service": get_service,
}
