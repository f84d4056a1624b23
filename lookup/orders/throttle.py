"""Throttle signals in a 200 answer's body (``--throttled-when code=429``), read without
aiohttp: the settings check them, and ``lookup config`` imports no HTTP client."""

from __future__ import annotations

from collections.abc import Sequence

from lookup.domain.errors import ConfigError

__all__ = ["parse_throttle_rules"]


def parse_throttle_rules(rules: Sequence[str] | str) -> tuple[tuple[tuple[str, ...], str], ...]:
    """``["code=429", "error_response.code=7"]`` (or one comma-separated string) as
    ``((("code",), "429"), (("error_response", "code"), "7"))``."""
    if isinstance(rules, str):
        rules = [r for r in rules.split(",") if r.strip()]
    parsed = []
    for rule in rules:
        path, eq, value = rule.strip().partition("=")
        keys = tuple(path.strip().split("."))
        if not eq or not all(keys) or not value.strip():
            raise ConfigError(
                f"a throttle signal must look like PATH=VALUE (a dotted JSON path and the "
                f"value meaning 'quota exceeded', e.g. code=429), got {rule!r}"
            )
        parsed.append((keys, value.strip()))
    return tuple(parsed)
