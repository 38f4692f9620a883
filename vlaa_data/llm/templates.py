"""Prompt templates: the built-in ones in ``vlaa_data/prompts/``, or a file the user names.

A template is Markdown with ``{{name}}`` placeholders and ``{{#name}} … {{/name}}`` sections
that appear only when ``name`` has a non-empty value. Single braces are left alone, so LaTeX
and JSON in a prompt need no escaping.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from vlaa_data.errors import SettingsError

__all__ = ["load_template", "render"]

_SECTION = re.compile(r"\{\{#(\w+)\}\}\n?(.*?)\{\{/\1\}\}\n?", re.DOTALL)
_FIELD = re.compile(r"\{\{(\w+)\}\}")


def load_template(name: str, override: str | Path | None = None) -> str:
    """The text of prompt ``name`` (``caption``, ``distill``, ...), or of ``override``."""
    if override:
        path = Path(override).expanduser()
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SettingsError(f"prompt file {path}: {exc.strerror or exc}") from exc
    package = resources.files("vlaa_data.prompts")
    return package.joinpath(f"{name}.md").read_text(encoding="utf-8")


def render(template: str, values: dict[str, str]) -> str:
    """Fill ``template``; a placeholder without a value is an error, not an empty string."""

    def section(match: re.Match[str]) -> str:
        return match.group(2) if values.get(match.group(1)) else ""

    def field(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise SettingsError(f"prompt template uses {{{{{name}}}}}, which this step lacks")
        return values[name]

    return _FIELD.sub(field, _SECTION.sub(section, template)).strip() + "\n"
