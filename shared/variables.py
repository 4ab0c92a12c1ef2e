"""How one environment variable becomes one typed value: the loader of every settings section.

A section (`shared.settings`) is a frozen dataclass of `Section`; each field is one variable. Its
name is the section's `prefix` plus the field's name upper-cased (`KafkaSettings.bootstrap_servers`
-> `KAFKA_BOOTSTRAP_SERVERS`), or the `env=` of its `var(...)` when the variable predates the
section (`KafkaSettings.clicks_topic` -> `CLICKS_TOPIC`). `var(...)` also states what a value must
be (bounds, URL schemes, choices, a check). One loader, `load`, reads any section from those
definitions: a new variable is one field, nothing else. A malformed value raises `SettingsError`
naming the variable. Order, as starlette's: the environment, then a `.env` file in the working
folder (if any), then the defaults.

Keys (`var(factory=random_key, production=True)`) have no default that anyone could read: a
process that is not told its key makes a random one, and with `CLICKTRACK_ENV=production` it
refuses to start without it, naming the variable. `make up` writes one set of development keys
to `.stack/dev-keys.env` (`DEV_KEYS_FILE`), read beneath `.env` outside production, so that the
services and the CLI it starts share them.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import re
import secrets
import typing
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from dotenv import dotenv_values

from shared.errors import SettingsError

ENV_VARIABLE = "CLICKTRACK_ENV"
"""`development` (the default) or `production`: in production every key must be set."""
DEV_KEYS_FILE = Path(".stack/dev-keys.env")
"""Development keys shared by the processes `make up` starts; never read in production."""
_PASSWORD_IN_URL = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@]*:)[^@]*(?P<tail>@)", re.I)


@dataclass(frozen=True)
class Secret:
    """A string that never shows itself in `repr`, `str` or logs; `.reveal()` returns it."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        # A URL keeps its shape (useful in errors) but not its password; anything else is hidden.
        shown = mask_url(self._value) if "://" in self._value else "***"
        return f"Secret({shown!r})"

    __str__ = __repr__


def mask_url(url: str) -> str:
    """`postgresql://u:pw@h/db` -> `postgresql://u:***@h/db`; other strings are returned as-is."""
    return _PASSWORD_IN_URL.sub(r"\g<head>***\g<tail>", url)


@dataclass(frozen=True)
class Rule:
    """What a variable's value must be, beyond its type (the field's annotation)."""

    low: int | None = None
    """Smallest whole number allowed."""
    high: int | None = None
    """Largest whole number allowed."""
    schemes: tuple[str, ...] = ()
    """A URL with one of these schemes."""
    choices: tuple[str, ...] = ()
    """One of these, in any case; stored spelled as here."""
    empty: bool = False
    """May be set to nothing (otherwise "set but empty" is an error)."""
    check: Callable[[str, str], str] | None = None
    """`check(variable, value)`: the value to keep, or `SettingsError`; for a list, per item."""
    production: bool = False
    """Must be set (not empty) when `CLICKTRACK_ENV=production`: a key or a credential."""


def var(
    default: Any = None,
    *,
    env: str | None = None,
    factory: Callable[[], Any] | None = None,
    **rule: Any,
) -> Any:
    """A settings field with its default (or a `factory` making one per section, such as
    `random_key`), its `Rule` and, when it does not follow its section's prefix, the name of its
    variable (`env`)."""
    metadata = {"rule": Rule(**rule), "env": env}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def random_key() -> Secret:
    """A fresh 256-bit key, URL-safe base64: the value of a key nobody set (outside production)."""
    return Secret(secrets.token_urlsafe(32))


def is_production(env: Mapping[str, str]) -> bool:
    """Whether `env` says `CLICKTRACK_ENV=production`; an unknown value is an error."""
    value = env.get(ENV_VARIABLE, "").strip().lower()
    if value not in ("", "development", "production"):
        raise SettingsError(f"{ENV_VARIABLE} must be development or production, got {value!r}")
    return value == "production"


def sql_identifier(name: str, value: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
        raise SettingsError(f"{name} must be a lower-case SQL identifier, got {value!r}")
    return value


def no_trailing_slash(name: str, value: str) -> str:
    return value.rstrip("/")


def bare_host(name: str, value: str) -> str:
    if any(ch.isspace() or not ch.isprintable() for ch in value) or value.endswith("/"):
        raise SettingsError(
            f"{name} must be a host without spaces or a trailing '/', got {value!r}"
        )
    return value


def long_token(name: str, value: str) -> str:
    if value and len(value) < 32:
        raise SettingsError(f"{name} must be at least 32 characters (fewer can be guessed)")
    return value


def cidr(name: str, value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise SettingsError(f"{name} must list CIDRs like 10.0.0.0/8, got {value!r}") from None


class Section:
    """A group of settings read together; subclasses are frozen dataclasses."""

    prefix: ClassVar[str] = ""
    """What the variables of the fields without an `env=` start with, e.g. `KAFKA_`."""

    @classmethod
    def derived(cls, env: Mapping[str, str], values: dict[str, Any]) -> dict[str, Any]:
        """`values` read from `env`, completed with the defaults that depend on another value."""
        return values

    def checked(self) -> Self:
        """This section, or `SettingsError` when two of its values disagree."""
        return self


S = TypeVar("S", bound=Section)


def variable(section: type[Section], f: Field[Any]) -> str:
    """The name of the environment variable of field `f` of `section`."""
    env: str | None = f.metadata.get("env")
    return env or section.prefix + f.name.upper()


def attributes(section: type[Section]) -> dict[str, str]:
    """Each variable `section` reads, in field order, and the field it fills."""
    return {variable(section, f): f.name for f in fields(section)}  # type: ignore[arg-type]


def variables(section: type[Section]) -> tuple[str, ...]:
    """The variables `section` reads, in field order."""
    return tuple(attributes(section))


def load(section: type[S], env: Mapping[str, str]) -> S:
    """`section` read from `env`; unset variables keep their default."""
    hints = typing.get_type_hints(section)
    production = is_production(env)
    values: dict[str, Any] = {}
    for f in fields(section):  # type: ignore[arg-type]
        name, rule = variable(section, f), _rule_of(f)
        if production and rule.production and not env.get(name, "").strip():
            raise SettingsError(
                f"{name} must be set when {ENV_VARIABLE}=production (a key or credential"
                " has no default there; see SECURITY.md, Keys)"
            )
        if name in env:
            values[f.name] = _parse(name, env[name], hints[f.name], rule)
    return section(**section.derived(env, values)).checked()


def environment() -> dict[str, str]:
    """The process's environment over the `.env` file of the working folder, if there is one,
    over the development keys (`DEV_KEYS_FILE`) outside production."""
    dotenv = Path(".env")
    found = dotenv_values(dotenv) if dotenv.is_file() else {}
    merged = {**{k: v for k, v in found.items() if v is not None}, **os.environ}
    if is_production(merged) or not DEV_KEYS_FILE.is_file():
        return merged
    keys = dotenv_values(DEV_KEYS_FILE)
    return {**{k: v for k, v in keys.items() if v is not None}, **merged}


def write_dev_keys(names: tuple[str, ...], path: Path = DEV_KEYS_FILE) -> bool:
    """Write a random key for each variable of `names` to `path` (mode 0600) unless the file
    exists; True if written. Made beside and linked into place, so two callers at once agree.
    An existing file keeps its keys and gets the ones it lacks (a key added since it was
    written), under a lock, so that every process of the stack shares those too."""
    if path.exists():
        return _add_dev_keys(names, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("# Development keys written by `make up`; never used in production.\n")
        out.writelines(f"{name}={random_key().reveal()}\n" for name in names)
    try:
        os.link(draft, path)
    except FileExistsError:
        return False
    finally:
        draft.unlink()
    return True


def _add_dev_keys(names: tuple[str, ...], path: Path) -> bool:
    """Append to `path` a random key for each variable of `names` it lacks; True if any."""
    with path.open("a+") as out:
        fcntl.flock(out, fcntl.LOCK_EX)
        out.seek(0)
        there = dotenv_values(stream=out)
        lacking = [n for n in names if n not in there]
        out.writelines(f"{name}={random_key().reveal()}\n" for name in lacking)
    return bool(lacking)


def _rule_of(f: Any) -> Rule:
    rule: Rule = f.metadata.get("rule", _NO_RULE)
    return rule


_NO_RULE = Rule()


def _parse(name: str, raw: str, kind: Any, rule: Rule) -> Any:
    """`raw`, the value of variable `name`, as a value of the field's type `kind`."""
    if kind is int:
        return _int(name, raw, rule)
    if kind is bool:
        return _bool(name, raw)
    if kind == tuple[str, ...]:
        parts = (part.strip() for part in raw.split(","))
        return tuple(rule.check(name, p) if rule.check else p for p in parts if p)
    if kind == str | None:
        return raw.strip() or None
    text = _text(name, raw, rule)
    return Secret(text) if kind is Secret else text


def _text(name: str, raw: str, rule: Rule) -> str:
    value = raw.strip()
    if not value and not rule.empty:
        raise SettingsError(f"{name} is set but empty")
    if rule.choices:
        spelled = {choice.lower(): choice for choice in rule.choices}
        if value.lower() not in spelled:
            raise SettingsError(f"{name} must be one of {', '.join(rule.choices)}, got {value!r}")
        value = spelled[value.lower()]
    if rule.schemes:
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in rule.schemes:
            raise SettingsError(
                f"{name} must be a URL starting with"
                f" {' or '.join(s + '://' for s in rule.schemes)}, got {mask_url(value)!r}"
            )
    return rule.check(name, value) if rule.check else value


def _int(name: str, raw: str, rule: Rule) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    low = rule.low if rule.low is not None else value
    high = rule.high if rule.high is not None else value
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")
