"""Render the configuration templates under infra/ with ``{{ name }}`` placeholders.

Nginx and Kafka files use ``$`` themselves, so the placeholders are doubled braces; a template
that names a value the caller did not give fails loudly instead of writing a broken config.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")


class MissingTemplateValue(KeyError):
    """A template names a value that was not supplied."""


def render(text: str, values: Mapping[str, object]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise MissingTemplateValue(name)
        return str(values[name])

    return _PLACEHOLDER.sub(substitute, text)


def render_file(template: Path, target: Path, values: Mapping[str, object]) -> Path:
    """Render ``template`` to ``target``, rewriting it only when the content changed."""
    content = render(template.read_text(), values)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists() or target.read_text() != content:
        target.write_text(content)
    return target
