"""router.calendar: the week map shared by `vapi-router map` and the console's calendar."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

from router.policy.loader import lint_path
from router.tools.calendar import CELLS, MapDay, MapKey, WeekMap, map_svg, map_text, ordinary_caller, week_map

POLICY = lint_path(Path("policies")).policy
assert POLICY is not None


def test_every_day_has_96_cells_even_when_the_clocks_change() -> None:
    m = week_map(POLICY, "+16505550117", date(2026, 10, 31), 3)  # New York leaves DST on Nov 1
    assert [len(d.cells) for d in m.days] == [CELLS] * 3
    assert [d.day for d in m.days] == [date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2)]


def test_a_cell_is_the_decision_at_its_start() -> None:
    m = week_map(POLICY, "+16505550117", date(2026, 11, 28), 1)  # a Saturday: open 09:00-13:00
    labels = [m.keys[c].label for c in m.days[0].cells]
    assert labels[9 * 4 - 1] == "after-hours"  # 08:45
    assert labels[9 * 4] == "intake-ab: split"  # 09:00, the window's start is included
    assert labels[13 * 4 - 1] == "intake-ab: split"  # 12:45
    assert labels[13 * 4] == "after-hours"  # 13:00, its end is not


def test_the_ordinary_caller_is_an_example_number_of_the_dialled_country() -> None:
    assert ordinary_caller("+16505550117") == "+12015550123"
    assert ordinary_caller("+442079460000") is not None and ordinary_caller("+442079460000").startswith("+44")
    m = week_map(POLICY, "+16505550117", date(2026, 11, 28), 1, anonymous=True)
    assert m.caller is None and "anonymous" in map_text(m)


def test_the_svg_is_xml_and_escapes_every_text() -> None:
    evil = "<script>alert(1)</script>&"
    m = WeekMap(
        dialled="+16505550117",
        caller=None,
        timezone="UTC",
        crm_status="disabled",
        days=(MapDay(date(2026, 1, 1), (0,) * CELLS, (f"x: {evil}",)),),
        keys=(MapKey(evil, "error", (evil,), "#000000", "A"),),
    )
    svg = map_svg(m)
    assert "<script>" not in svg
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert not [e for e in root.iter() if "style" in e.attrib or e.tag.endswith("style")]
