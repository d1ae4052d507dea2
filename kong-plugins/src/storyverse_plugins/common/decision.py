"""What a plugin core decides; only the handler turns a decision into PDK calls (STYLE principle 3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storyverse_plugins.common.problem import PROBLEM_JSON, problem


@dataclass(frozen=True)
class Allow:
    """Let the request through; set these headers upstream and on the response, and share these values.

    An upstream header whose value is `[]` is removed (kong.service.request.set_headers clears it).
    """

    upstream_headers: dict[str, str | list[str]] = field(default_factory=dict)
    response_headers: dict[str, str] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Deny:
    """Stop the request with a problem document."""

    status: int
    code: str
    detail: str
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self, instance: str | None = None, request_id: str | None = None) -> dict[str, Any]:
        return problem(self.status, self.code, self.detail, instance=instance, request_id=request_id, **self.extra)

    def response_headers(self) -> dict[str, str]:
        return {"Content-Type": PROBLEM_JSON, **self.headers}


Decision = Allow | Deny
