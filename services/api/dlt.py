"""DLT templates: typed slots, the rules Indian operators enforce, and message rendering.

A DLT template is whitelisted text with slots; an SMS is delivered only when it is the template
with each slot filled. So a link may sit only inside a slot (a link in the fixed text cannot be
swapped for a tracked one without the SMS failing to match), and each slot value has a length
limit (30 characters is the usual one).

Since the TRAI direction of 18 November 2025 slots are typed, and the operators' scrubbers
reject a value that does not fit its tag: `{#numeric#}` (also `{#number#}`: digits only),
`{#alphanumeric#}` (letters and digits only), `{#url#}` and `{#urlott#}` (a link), `{#cbn#}` (a
call-back number), `{#email#}`, besides the legacy untyped `{#var#}` that is being phased out.
Some portals take the tags inside the text, others in a tagging section apart: a template is
typed either way (`parse_template(text, slot_types)`). A link may sit only in a `{#url#}`,
`{#urlott#}` or legacy `{#var#}` slot (`link_outside_url_var`).

Rendering is pure: `slot_urls` lists the links in the values, the caller maps each one to its
short link (or to nothing when tracking is off), and `render` substitutes them, checks the limit
and measures the result against the text as it would have been sent without shortening.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.api.sms import SmsLength, measure
from shared.errors import SettingsError, TemplateError
from shared.urls import FoundUrl, find_urls

VAR = "{#var#}"
"""The legacy, untyped slot marker."""
DEFAULT_VAR_LIMIT = 30
"""Characters a slot value may hold on most DLT platforms."""
TAGS = ("var", "numeric", "alphanumeric", "url", "urlott", "cbn", "email")
"""The slot types, as their tags spell them (`{#number#}` is read as `numeric`)."""
ALIASES = {"number": "numeric"}
LINK_TAGS = frozenset({"url", "urlott", "var"})
"""Slot types that may hold a link."""
LEGACY_WARNING = (
    "the template has untyped {#var#} slots: operators are phasing them out (TRAI direction of"
    " 18 November 2025); tag each slot ({#numeric#}, {#alphanumeric#}, {#url#}, {#urlott#},"
    " {#cbn#}, {#email#}), inline or with slot_types"
)

_TOKEN = re.compile(r"\{#([^#{}]{0,40})#\}")
_FITS = {
    "numeric": (re.compile(r"[0-9]+"), "digits only"),
    "alphanumeric": (re.compile(r"[A-Za-z0-9]+"), "letters and digits only"),
    "cbn": (re.compile(r"\+?[0-9]{3,15}"), "a call-back number (digits, an optional leading +)"),
    "email": (re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+"), "an e-mail address"),
}


def slot_tag(tag: str) -> str:
    """The type of slot `tag` (`number` is `numeric`), or `unsupported_variable`."""
    kind = ALIASES.get(tag, tag)
    if kind not in TAGS:
        raise TemplateError(
            f"{tag!r} is not a slot type: use one of {', '.join(TAGS)} (or number)",
            code="unsupported_variable",
        )
    return kind


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: the fixed text around its slots (`len(fixed) == slots + 1`) and the
    type of each slot."""

    fixed: tuple[str, ...]
    kinds: tuple[str, ...] = ()
    """The type of each slot (one of `TAGS`); empty means every slot is `var`."""

    @property
    def slots(self) -> int:
        """Number of slots."""
        return len(self.fixed) - 1

    def kind(self, slot: int) -> str:
        """The type of slot `slot`."""
        return self.kinds[slot] if self.kinds else "var"

    @property
    def link_slots(self) -> tuple[int, ...]:
        """The slots that may hold a link."""
        return tuple(i for i in range(self.slots) if self.kind(i) in LINK_TAGS)

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the operators may refuse later: legacy `{#var#}` slots."""
        return (LEGACY_WARNING,) if any(self.kind(i) == "var" for i in range(self.slots)) else ()

    def fill(self, values: Sequence[str]) -> str:
        """The message with `values` in the slots, in order."""
        if len(values) != self.slots:
            raise TemplateError(
                f"the template has {self.slots} slot(s) but {len(values)} value(s) were given",
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


def tag_limits(items: Sequence[str], default: int) -> dict[str, int]:
    """The character limit of each typed slot from `DLT_TAG_LIMITS` items (`email=50`); a tag
    not listed takes `default`. An unknown tag raises `SettingsError`."""
    limits = dict.fromkeys(TAGS[1:], default)
    for item in items:
        tag, _, limit = item.partition("=")
        kind = ALIASES.get(tag, tag)
        if kind not in limits:
            raise SettingsError(
                f"DLT_TAG_LIMITS names {tag!r}, which is not a slot type ({', '.join(TAGS[1:])})"
            )
        limits[kind] = int(limit)
    return limits


def short_link_length(short_domain: str, code_length: int) -> int:
    """Characters of a short link as written in a message: `<short domain>/<code>`."""
    return len(short_domain) + 1 + code_length


def parse_template(template: str, slot_types: Sequence[str] | None = None) -> Template:
    """Split a template at its slots and type them: by their inline tags, or, for a template of
    plain `{#var#}` slots, by `slot_types` (one per slot, as a separate tagging section gives
    them). Refuses unknown `{#...#}` markers (`unsupported_variable`), links in the fixed text
    (`link_outside_var`, with the `position` of the link in the template) and slot types that do
    not match the slots (`slot_types_mismatch`)."""
    if not template.strip():
        raise TemplateError("the template is empty", code="empty_template")
    fixed: list[str] = []
    kinds: list[str] = []
    starts: list[int] = []
    last = 0
    for token in _TOKEN.finditer(template):
        try:
            kinds.append(slot_tag(token.group(1)))
        except TemplateError:
            raise TemplateError(
                f"{token.group()!r} at position {token.start()} is not a slot marker: use"
                f" {VAR} or a typed tag ({', '.join('{#' + t + '#}' for t in TAGS[1:])})",
                code="unsupported_variable",
                position=token.start(),
            ) from None
        fixed.append(template[last : token.start()])
        starts.append(last)
        last = token.end()
    fixed.append(template[last:])
    starts.append(last)
    for part, start in zip(fixed, starts, strict=True):
        for link in find_urls(part):
            position = start + link.start
            raise TemplateError(
                f"the template's fixed text has a link at position {position} ({link.text!r});"
                " DLT allows links only inside {#url#}, {#urlott#} or {#var#} slots",
                code="link_outside_var",
                position=position,
            )
    if slot_types is not None:
        if any(kind != "var" for kind in kinds):
            raise TemplateError(
                "the template's slots are tagged inline: give slot_types only for a template of"
                f" plain {VAR} slots",
                code="slot_types_mismatch",
            )
        if len(slot_types) != len(kinds):
            raise TemplateError(
                f"the template has {len(kinds)} slot(s) but {len(slot_types)} slot type(s) were"
                " given",
                code="slot_types_mismatch",
            )
        kinds = [slot_tag(t) for t in slot_types]
    typed = tuple(kinds) if any(kind != "var" for kind in kinds) else ()
    return Template(tuple(fixed), typed)


def slot_urls(values: Sequence[str]) -> list[tuple[int, FoundUrl]]:
    """(slot index, link) for every link in the values, in order."""
    return [(i, link) for i, value in enumerate(values) for link in find_urls(value)]


def check_slots(template: Template, values: Sequence[str]) -> None:
    """Refuse values the operators' scrubbers would: a link in a slot that may not hold one
    (`link_outside_url_var`, with the slot and the link's `position` in the value), and a value
    that does not fit its tag (`invalid_var_value`, naming the slot and its tag)."""
    template.fill(values)  # checks the number of values
    for slot, value in enumerate(values):
        kind = template.kind(slot)
        found = find_urls(value)
        tag = "{#" + kind + "#}"
        if found and kind not in LINK_TAGS:
            raise TemplateError(
                f"slot {slot} is {tag} but holds a link at position {found[0].start}"
                f" ({found[0].text!r}): a link belongs in a {{#url#}} or {{#urlott#}} slot",
                code="link_outside_url_var",
                slot=slot,
                position=found[0].start,
            )
        if kind in ("url", "urlott"):
            if len(found) != 1 or value.strip() != found[0].text:
                raise TemplateError(
                    f"slot {slot} is {tag}: it must hold one link and nothing else",
                    code="invalid_var_value",
                    slot=slot,
                    tag=kind,
                )
        elif kind in _FITS:
            pattern, what = _FITS[kind]
            if not pattern.fullmatch(value):
                raise TemplateError(
                    f"slot {slot} is {tag}: it must hold {what}",
                    code="invalid_var_value",
                    slot=slot,
                    tag=kind,
                )


def render(
    template: Template,
    values: Sequence[str],
    short_links: Mapping[str, str] | None,
    *,
    var_limit: int = DEFAULT_VAR_LIMIT,
    tag_limits: Mapping[str, int] | None = None,
) -> Rendering:
    """Fill `template` with `values`, each link replaced by `short_links[link.url]`.

    `short_links=None` leaves links untouched (tracking off). The values are checked against
    their slots' types first (`check_slots`). A value longer than its slot's limit after
    substitution raises `var_too_long` naming the slot: `var_limit` for `{#var#}` slots, and
    `tag_limits[tag]` (default `var_limit`) for typed ones.
    """
    check_slots(template, values)
    original_text = template.fill(values)
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
        kind = template.kind(slot)
        limit = var_limit if kind == "var" or tag_limits is None else tag_limits[kind]
        if len(final) > limit:
            why = ""
            if last:  # the value has links
                why = (
                    " even with its links shortened"
                    if short_links is not None
                    else " (its links are not shortened: link tracking is off)"
                )
            raise TemplateError(
                f"slot {slot}{'' if kind == 'var' else f' ({{#{kind}#}})'} would hold"
                f" {len(final)} characters, more than the limit of {limit}{why}",
                code="var_too_long",
                slot=slot,
                length=len(final),
                limit=limit,
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
