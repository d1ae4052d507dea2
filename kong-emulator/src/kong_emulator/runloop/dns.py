"""Target names resolved as Kong 3.9.1's DNS client resolves them (kong/resty/dns/client.lua; `new_dns_client = off`,
kong_defaults.lua:174).

* The hosts file first (`dns_hostsfile = /etc/hosts`, kong_defaults.lua:165): client.lua:515-570 loads it into the
  cache as A (and AAAA) records with a ten-year TTL, `localhost` always defined as 127.0.0.1 (RFC 6761,
  client.lua:527-532); the A record wins unless AAAA is preferred, which Kong's default order never does.
* Then the resolver (resolv.conf, its search list), type A (`dns_order = LAST,SRV,A,CNAME`, kong_defaults.lua:166),
  cached for the record's TTL; a failed query leaves no address (targets.lua:499-511: the target then has no
  address and gets no traffic).

Not emulated: the SRV step of `dns_order` (a name with SRV records gets Kong the SRV port and weights) and one
balancer address per A record (the emulator round-robins a target's addresses within its weight).
"""

from __future__ import annotations

import ipaddress
import logging
import time

import dns.asyncresolver
import dns.exception
import dns.resolver

log = logging.getLogger("kong_emulator.kong")
HOSTS_TTL = 10 * 365 * 24 * 60 * 60


def parse_hosts(text: str) -> dict[str, str]:
    """name (lower case) → its first IPv4 address in the hosts file."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            is_v4 = ipaddress.ip_address(fields[0]).version == 4
        except ValueError:
            continue
        if is_v4:
            for name in fields[1:]:
                out.setdefault(name.lower(), fields[0])
    out.setdefault("localhost", "127.0.0.1")
    return out


class KongResolver:
    """name → IPv4 addresses, with Kong's sources and order and a TTL cache."""

    def __init__(self, hostsfile: str = "/etc/hosts") -> None:
        try:
            with open(hostsfile, encoding="utf-8", errors="replace") as fh:
                self.hosts = parse_hosts(fh.read())
        except OSError:
            log.warning("Hosts file not found: %s", hostsfile)  # client.lua:522
            self.hosts = parse_hosts("")
        self._cache: dict[str, tuple[float, list[str]]] = {}
        self._turn: dict[str, int] = {}

    async def resolve(self, name: str) -> list[str]:
        try:
            ipaddress.ip_address(name)
            return [name]
        except ValueError:
            pass
        key = name.lower()
        if key in self.hosts:
            return [self.hosts[key]]
        cached = self._cache.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            answer = await dns.asyncresolver.resolve(key, "A")
            addresses, ttl = [r.address for r in answer], answer.rrset.ttl
        except (dns.exception.DNSException, OSError) as exc:
            log.warning("querying dns for %s failed: %s", name, exc)
            addresses, ttl = [], 1  # targets.lua requeries a failed name after requeryInterval (1 s)
        self._cache[key] = (time.monotonic() + ttl, addresses)
        return addresses

    async def address(self, name: str) -> str | None:
        """The address to connect to this time: a target's A records in turn; None when it has none."""
        addresses = await self.resolve(name)
        if not addresses:
            return None
        turn = self._turn.get(name, 0)
        self._turn[name] = turn + 1
        return addresses[turn % len(addresses)]
