"""Templates: Liquid (python-liquid) rendered against a recipient's profile.

An email template's HTML gets its `<style>` rules inlined into `style` attributes and a text part
derived from it. Both happen once per template, not per recipient: Liquid tags are set aside
behind placeholders, the HTML is inlined and converted, and the tags are put back, so a send pays
for one Liquid render per part and recipient."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import css_inline
import html2text
from liquid import Environment
from liquid.exceptions import LiquidError, UnknownFilterError

from overture.errors import Invalid

__all__ = ["Compiled", "RenderError", "check_source", "compile_template", "has_unsubscribe_link"]

_ENV = Environment()
_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
_UNSUBSCRIBE = re.compile(r"""href\s*=\s*["'][^"']*unsubscribe[^"']*["']|\{\{\s*unsubscribe_url\b""", re.I)


class RenderError(Exception):
    """A template that fails for one recipient (a filter given a value it cannot take...)."""


def _line_of(exc: LiquidError) -> int | None:
    token = getattr(exc, "token", None)
    if token is None or getattr(token, "source", None) is None:
        return None
    return int(token.source[: token.start_index].count("\n")) + 1


def check_source(source: str, field: str) -> None:
    """422 naming the field and the line when `source` is not a Liquid template we can render."""
    try:
        template = _ENV.from_string(source)
    except LiquidError as exc:
        raise _invalid(exc, field)
    try:
        template.render()  # an unknown filter only shows when it runs
    except UnknownFilterError as exc:
        raise _invalid(exc, field)
    except Exception:
        pass


def _invalid(exc: LiquidError, field: str) -> Invalid:
    line = _line_of(exc)
    message = getattr(exc, "message", None) or str(exc).splitlines()[0]
    where = f"line {line}: " if line is not None else ""
    return Invalid(f"{field}: {where}{message}", field=field, details={"line": line})


def has_unsubscribe_link(html: str) -> bool:
    return _UNSUBSCRIBE.search(html) is not None


def _protect(source: str) -> tuple[str, list[str]]:
    tags: list[str] = []

    def keep(match: re.Match[str]) -> str:
        tags.append(match.group(0))
        return f"LIQTAG{len(tags) - 1}X"

    return _TAG.sub(keep, source), tags


def _restore(text: str, tags: list[str]) -> str:
    return re.sub(r"LIQTAG(\d+)X", lambda m: tags[int(m.group(1))], text)


def prepare_email(html: str) -> tuple[str, str]:
    """(inlined HTML source, text source): both still Liquid templates."""
    protected, tags = _protect(html)
    try:
        inlined = css_inline.inline(protected)
    except ValueError as exc:
        raise Invalid(f"body: the CSS cannot be inlined: {exc}", field="body")
    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.ignore_images = True
    text = converter.handle(protected).strip()
    return _restore(inlined, tags), _restore(text, tags)


#: Between the parts of a message rendered in one pass (record separators: not text anyone writes).
_SEPARATOR = "\x1e\x1fOVERTURE-PART\x1f\x1e"


@dataclass(frozen=True)
class Compiled:
    """A template ready to render: one parsed Liquid template per part, and all parts joined in one
    template so a message costs one render (one context) instead of one per part."""

    channel: str
    parts: dict[str, Any]
    joined: Any

    def render(self, context: Mapping[str, Any]) -> dict[str, str]:
        try:
            pieces = self.joined.render(**context).split(_SEPARATOR)
        except Exception:  # name the part that fails
            return self._render_parts(context)
        if len(pieces) != len(self.parts):  # a value held the separator: render part by part
            return self._render_parts(context)
        return dict(zip(self.parts, pieces, strict=True))

    def _render_parts(self, context: Mapping[str, Any]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, template in self.parts.items():
            try:
                out[name] = template.render(**context)
            except LiquidError as exc:
                raise RenderError(f"{name}: {str(exc).splitlines()[0]}") from None
            except Exception as exc:  # a filter on an unexpected value type
                raise RenderError(f"{name}: {type(exc).__name__}: {exc}") from None
        return out

    def fields(self) -> set[str]:
        """Root variable names the parts read (profile columns, `profile`, `customer_id`...)."""
        names: set[str] = set()
        for template in self.parts.values():
            names.update(str(n) for n in template.analyze().globals)
        return names


@lru_cache(maxsize=256)
def compile_template(channel: str, subject: str | None, body: str) -> Compiled:
    """Parse (and for email, inline and derive the text part of) a template once per process."""
    sources: dict[str, str] = {}
    if channel == "email":
        html, text = prepare_email(body)
        sources = {"subject": subject or "", "html": html, "text": text}
    else:
        sources = {"text": body}
    parts = {name: _ENV.from_string(src) for name, src in sources.items()}
    return Compiled(channel, parts, _ENV.from_string(_SEPARATOR.join(sources.values())))
