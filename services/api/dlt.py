"""DLT templates: `{#var#}` slots, the rules Indian operators enforce, and message rendering.

A DLT template is whitelisted text with `{#var#}` slots; an SMS is delivered only when it is the
template with each slot filled. So a link may sit only inside a slot (a link in the fixed text
cannot be swapped for a tracked one without the SMS failing to match), and each slot value has a
length limit (30 characters is the usual one).

Rendering is pure: `slot_urls` lists the links in the values, the caller maps each one to its
short link (or to nothing when tracking is off), and `render` substitutes them, checks the limit
and measures the result against the text as it would have been sent without shortening.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.api.sms import SmsLength, measure
from shared.errors import TemplateError
from shared.urls import FoundUrl, find_urls

VAR = "{#var#}"
"""The slot marker of a DLT template."""
DEFAULT_VAR_LIMIT = 30
"""Characters a slot value may hold on most DLT platforms."""

_TOKEN = re.compile(r"\{#([^#{}]{0,40})#\}")


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: the fixed text around its slots (`len(fixed) == slots + 1`)."""

    fixed: tuple[str, ...]

    @property
    def slots(self) -> int:
        """Number of `{#var#}` slots."""
        return len(self.fixed) - 1

    def fill(self, values: Sequence[str]) -> str:
        """The message with `values` in the slots, in order."""
        if len(values) != self.slots:
            raise TemplateError(
                f"the template has {self.slots} {VAR} slot(s) but {len(values)} value(s) were"
                " given",
                code="var_count_mismatch",
            )
        out = [self.fixed[0]]
        for value, after in zip(values, self.fixed[1:], strict=True):
            out += (value, after)
        return "".join(out)


@dataclass(frozen=True, slots=True)
class SlotLink:
    """A link found in a slot value and what it became."""

    slot: int
    """Index of the slot (0-based)."""
    url: str
    """The link as written in the value."""
    target: str
    """The link as a phone opens it (`http://` added when written without a scheme)."""
    replacement: str
    """The short link written in its place, or the link itself when it is left untouched."""


@dataclass(frozen=True, slots=True)
class Rendering:
    """A rendered message, measured, with the text it replaces for comparison."""

    text: str
    """The final message."""
    sms: SmsLength
    """Encoding, length and segments of the final message."""
    original_text: str
    """The message with the values as given (links not shortened)."""
    original: SmsLength
    """Encoding, length and segments of the original message."""
    values: tuple[str, ...]
    """The slot values after substitution."""
    links: tuple[SlotLink, ...]
    """Every link found in the values, in order."""


def short_link_length(short_domain: str, code_length: int) -> int:
    """Characters of a short link as written in a message: `<short domain>/<code>`."""
    return len(short_domain) + 1 + code_length


def parse_template(template: str) -> Template:
    """Split a template at its `{#var#}` slots; refuse unknown `{#...#}` markers and links in the
    fixed text (`link_outside_var`, with the `position` of the link in the template)."""
    if not template.strip():
        raise TemplateError("the template is empty", code="empty_template")
    for token in _TOKEN.finditer(template):
        if token.group() != VAR:
            raise TemplateError(
                f"{token.group()!r} at position {token.start()} is not a slot marker: only {VAR}"
                " is supported",
                code="unsupported_variable",
                position=token.start(),
            )
    fixed = tuple(template.split(VAR))
    offset = 0
    for i, part in enumerate(fixed):
        for link in find_urls(part):
            position = offset + link.start
            raise TemplateError(
                f"the template's fixed text has a link at position {position} ({link.text!r});"
                f" DLT allows links only inside {VAR} slots",
                code="link_outside_var",
                position=position,
            )
        offset += len(part) + (len(VAR) if i < len(fixed) - 1 else 0)
    return Template(fixed)


def slot_urls(values: Sequence[str]) -> list[tuple[int, FoundUrl]]:
    """(slot index, link) for every link in the values, in order."""
    return [(i, link) for i, value in enumerate(values) for link in find_urls(value)]


def render(
    template: Template,
    values: Sequence[str],
    short_links: Mapping[str, str] | None,
    *,
    var_limit: int = DEFAULT_VAR_LIMIT,
) -> Rendering:
    """Fill `template` with `values`, each link replaced by `short_links[link.url]`.

    `short_links=None` leaves links untouched (tracking off). A value longer than `var_limit`
    characters after substitution raises `var_too_long` naming the slot.
    """
    original_text = template.fill(values)  # also checks the number of values
    final_values: list[str] = []
    links: list[SlotLink] = []
    for slot, value in enumerate(values):
        pieces: list[str] = []
        last = 0
        for link in find_urls(value):
            replacement = link.text if short_links is None else short_links[link.url]
            pieces += (value[last : link.start], replacement)
            last = link.end
            links.append(SlotLink(slot, link.text, link.url, replacement))
        pieces.append(value[last:])
        final = "".join(pieces)
        if len(final) > var_limit:
            why = ""
            if last:  # the value has links
                why = (
                    " even with its links shortened"
                    if short_links is not None
                    else " (its links are not shortened: link tracking is off)"
                )
            raise TemplateError(
                f"slot {slot} would hold {len(final)} characters, more than the limit of"
                f" {var_limit}{why}",
                code="var_too_long",
                slot=slot,
                length=len(final),
                limit=var_limit,
            )
        final_values.append(final)
    text = template.fill(final_values)
    return Rendering(
        text=text,
        sms=measure(text),
        original_text=original_text,
        original=measure(original_text),
        values=tuple(final_values),
        links=tuple(links),
    )
