"""Each process reads only its own settings sections; check it reads every section its code uses.

A section a process does not name keeps its defaults, so a forgotten one would quietly point the
process at the native stack's defaults: this test reads the code of each service for the
sections it touches (`settings.postgres`, `self._settings.kafka`, ...) and compares.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.api.__main__ import SECTIONS as API
from services.counter.__main__ import SECTIONS as COUNTER
from services.ops.__main__ import SECTIONS as LAG_EXPORTER
from services.redirector.__main__ import SECTIONS as REDIRECTOR
from services.relay.__main__ import SECTIONS as RELAY
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SECTION_USE = re.compile(
    r"\b(?:settings|_settings|s)\.(" + "|".join(Settings.sections()) + r")\b(?!\()"
)


def sections_used(folder: str) -> set[str]:
    used: set[str] = set()
    for path in (ROOT / "services" / folder).glob("*.py"):
        used.update(SECTION_USE.findall(path.read_text()))
    return used


@pytest.mark.parametrize(
    ("folder", "sections"),
    [
        ("redirector", REDIRECTOR),
        ("counter", COUNTER),
        ("api", API),
        ("relay", RELAY),
        ("ops", LAG_EXPORTER),
    ],
)
def test_a_process_reads_every_section_its_code_uses(
    folder: str, sections: tuple[str, ...]
) -> None:
    assert sections_used(folder) == set(sections)
    Settings.from_env({}, sections=sections)  # every name is a section
