"""System and user tags on any resource.

A plugin defines the system tags it understands (``define_system_tag("VmInstance",
"hostname::{hostname}")``); any other system tag is refused, so a typo cannot be stored and
silently ignored. User tags are free text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from chalicelib.context import Context
from chalicelib.db.base import Base
from chalicelib.db.models import SystemTag, UserTag
from chalicelib.errors import InvalidArgument


@dataclass(frozen=True)
class SystemTagPattern:
    resource: str
    format: str  # hostname::{hostname}

    @property
    def regex(self) -> re.Pattern[str]:
        parts = re.split(r"\{(\w+)\}", self.format)
        pattern = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.+)"
                          for i, p in enumerate(parts))
        return re.compile(f"^{pattern}$")


_PATTERNS: list[SystemTagPattern] = []


def define_system_tag(resource: str, format: str) -> SystemTagPattern:
    pattern = SystemTagPattern(resource, format)
    _PATTERNS.append(pattern)
    return pattern


def _check_system_tag(resource: str, tag: str) -> None:
    allowed = [p for p in _PATTERNS if p.resource == resource]
    if not any(p.regex.match(tag) for p in allowed):
        known = ", ".join(p.format for p in allowed) or "none"
        raise InvalidArgument(
            f"unknown system tag {tag!r} for {resource}; system tags it takes: {known}",
            details={"field": "systemTags"},
        )


def apply_tags(ctx: Context, resource: Base, system_tags: list[str],
               user_tags: list[str]) -> None:
    kind = resource.__resource__
    for tag in system_tags:
        _check_system_tag(kind, tag)
        ctx.session.add(SystemTag(resource_uuid=resource.uuid, resource_type=kind, tag=tag,
                                  account_uuid=ctx.caller.account_uuid))
    for tag in user_tags:
        ctx.session.add(UserTag(resource_uuid=resource.uuid, resource_type=kind, tag=tag,
                                type="User", account_uuid=ctx.caller.account_uuid))
