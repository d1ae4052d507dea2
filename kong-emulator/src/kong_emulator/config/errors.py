"""The one error type of the emulator's configuration side, and the one place its messages are built.

Every message names where the problem is, then the field, then Kong's own reason:

    in 'routes' entity 'stories' (routes[2]): field 'paths[0]': non-normalized path, consider use '/a/b' instead

`where` says which file part or entity (`in kong.conf`, `in declarative config`,
`in 'plugins' entity 'sv-jwt' (plugins[0])`, `in plugin info of 'sv-jwt'`); `field` is a dotted path with 0-based
list indices (`config.tiers[1].limit`);
`reason` keeps Kong's wording wherever Kong has one (`kong/db/schema/init.lua` `validation_errors`, `typedefs.lua`,
`conf_loader`). Positions are 0-based YAML positions, unlike Kong's 1-based Lua ones.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration problem (kong.conf, kong.yml, plugin schema or info) the emulator refuses to start with."""

    def __init__(self, reason: str, *, where: str = "", field: str | None = None) -> None:
        self.reason = reason
        self.where = where
        self.field = field
        super().__init__(format_message(where, field, reason))

    def located(self, where: str, field_prefix: str | None = None) -> ConfigError:
        """The same error placed in `where` (kept if already set), with `field_prefix` prepended to the field."""
        field = self.field
        if field_prefix:
            field = f"{field_prefix}.{field}" if field and not field.startswith("[") else f"{field_prefix}{field or ''}"
        return ConfigError(self.reason, where=self.where or where, field=field)


def format_message(where: str, field: str | None, reason: str) -> str:
    """`<where>: field '<field>': <reason>`, leaving out the parts that are empty."""
    parts = [p for p in (where, f"field '{field}'" if field else "") if p]
    return ": ".join([*parts, reason])


def entity_where(kind: str, label: str | None, location: str) -> str:
    """`in 'routes' entity 'stories' (routes[2])`; an entity without name or id is named by its location only."""
    if label:
        return f"in '{kind}' entity '{label}' ({location})"
    return f"in '{kind}' entity ({location})"
