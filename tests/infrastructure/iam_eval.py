"""A small IAM policy evaluator for the tests: identity-based Allow/Deny statements with
Action/Resource wildcards and the condition operators the policies here use
(StringEquals, StringLike, Null, ForAnyValue:StringEquals, ForAnyValue:StringLike).

Semantics from the IAM policy reference ("IAM JSON policy elements: Condition operators"):
a key that is absent makes StringEquals/StringLike false; ``Null: "true"`` means the key
is absent, ``"false"`` that it is present; an explicit Deny wins over any Allow.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    request_tags: Mapping[str, str] = field(default_factory=dict)
    resource_tags: Mapping[str, str] = field(default_factory=dict)
    context: Mapping[str, str | list[str]] = field(default_factory=dict)

    def value(self, key: str) -> list[str] | None:
        lowered = key.lower()
        if lowered.startswith("aws:requesttag/"):
            tag = key.split("/", 1)[1]
            return [self.request_tags[tag]] if tag in self.request_tags else None
        if lowered.startswith("aws:resourcetag/"):
            tag = key.split("/", 1)[1]
            return [self.resource_tags[tag]] if tag in self.resource_tags else None
        if lowered == "aws:tagkeys":
            return list(self.request_tags) or None
        for name, value in self.context.items():
            if name.lower() == lowered:
                return value if isinstance(value, list) else [value]
        return None


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _matches(patterns: Any, value: str, *, case_sensitive: bool = True) -> bool:
    for pattern in _listed(patterns):
        if case_sensitive and fnmatch.fnmatchcase(value, pattern):
            return True
        if not case_sensitive and fnmatch.fnmatchcase(value.lower(), pattern.lower()):
            return True
    return False


def _condition_holds(operator: str, key: str, expected: Any, request: Request) -> bool:
    actual = request.value(key)
    wanted = _listed(expected)
    if operator == "Null":
        return (actual is None) == (str(wanted[0]).lower() == "true")
    if actual is None:
        return False
    if operator == "StringEquals":
        return all(value in wanted for value in actual)
    if operator == "StringLike":
        return all(_matches(wanted, value) for value in actual)
    if operator == "ForAnyValue:StringEquals":
        return any(value in wanted for value in actual)
    if operator == "ForAnyValue:StringLike":
        return any(_matches(wanted, value) for value in actual)
    raise ValueError(f"condition operator {operator!r} is not evaluated here")


def _statement_applies(statement: Mapping[str, Any], request: Request) -> bool:
    if not _matches(statement.get("Action", []), request.action, case_sensitive=False):
        return False
    if not _matches(statement.get("Resource", []), request.resource):
        return False
    for operator, entries in statement.get("Condition", {}).items():
        for key, expected in entries.items():
            if not _condition_holds(operator, key, expected, request):
                return False
    return True


def allowed(policy: Mapping[str, Any], request: Request) -> bool:
    statements = [s for s in policy["Statement"] if _statement_applies(s, request)]
    if any(s["Effect"] == "Deny" for s in statements):
        return False
    return any(s["Effect"] == "Allow" for s in statements)
