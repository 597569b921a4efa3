"""Who answers when: a dialled number's week as 15-minute cells coloured by target. Pure.

Shared by `vapi-router map` and the console's calendar page. Each cell is the decision for
an ordinary caller (a fixed-line number of the dialled number's country, not in the CRM, no
tags) at the cell's start, in the policy's time zone; days are marked with the holidays,
closed dates and special hours of the policy's schedules.
"""

from __future__ import annotations

import html
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import phonenumbers

from router.runtime import phone
from router.runtime.decide import evaluate_for
from router.runtime.facttypes import CrmStatus, Facts
from router.runtime.model import Decision, Policy
from router.runtime.schedules import effective_hours

CELL_MINUTES = 15
CELLS = 24 * 60 // CELL_MINUTES  # 96 per day
_TITLES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # not %a: that follows the locale
# Distinct on white and for the common colour-vision deficiencies (Okabe-Ito, then Tol's muted).
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#332288",
    "#882255",
    "#44AA99",
    "#999933",
    "#AA4499",
)
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True, slots=True)
class MapKey:
    """One colour of the map: a target (or an inline reply of a route) and the routes giving it."""

    label: str
    kind: str  # assistantId, destination, error, split, …
    routes: tuple[str, ...]  # route ids, "default" for the default
    colour: str
    letter: str


@dataclass(frozen=True, slots=True)
class MapDay:
    day: date
    cells: tuple[int, ...]  # CELLS indices into WeekMap.keys
    notes: tuple[str, ...]  # "office: Christmas Day", "office: closed date", …


@dataclass(frozen=True, slots=True)
class WeekMap:
    dialled: str  # E.164
    caller: str | None  # E.164 of the ordinary caller, None for anonymous
    timezone: str
    crm_status: str
    days: tuple[MapDay, ...]
    keys: tuple[MapKey, ...]

    @property
    def legend_caller(self) -> str:
        """Who the cells are decided for, numbers masked."""
        who = f"an ordinary caller ({phone.mask(self.caller)})" if self.caller else "an anonymous caller"
        crm = "CRM disabled" if self.crm_status == "disabled" else f"CRM status {self.crm_status}"
        return f"{who}, no tags, no CRM fields, {crm}"


def ordinary_caller(dialled: str) -> str | None:
    """A fixed-line example number of the dialled number's country (libphonenumber's own
    example, so it is in no real customer list), E.164; None when there is none."""
    region = phone.country_of(dialled)
    if region is None:
        return None
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.FIXED_LINE)
    if example is None:
        return None
    return str(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164))


def _key_of(decision: Decision) -> tuple[str, str, str]:
    """(label, kind, route id) of a decision: the named target, else the route's inline reply."""
    route = decision.route.id if decision.route else "default"
    t = decision.target
    kind = t.kind if t is not None else "none"
    if t is not None and t.name:
        return t.name, kind, route
    return f"{route}: {kind}" if t is not None else "no answer", kind, route


def week_map(
    policy: Policy,
    dialled: str,
    start: date,
    days: int = 7,
    *,
    caller: str | None = None,
    anonymous: bool = False,
) -> WeekMap:
    """The map of `days` dates from `start` for `dialled` (E.164). `caller` None: the
    ordinary caller of ordinary_caller(); `anonymous`: a withheld number instead."""
    zone = zoneinfo.ZoneInfo(policy.settings.timezone)
    who = None if anonymous else (caller or ordinary_caller(dialled))
    status: CrmStatus = "disabled" if policy.crm is None else "not_found"
    index: dict[str, int] = {}
    found: list[tuple[str, str, list[str]]] = []
    out_days: list[MapDay] = []
    for i in range(max(days, 0)):
        day = start + timedelta(days=i)
        cells: list[int] = []
        for c in range(CELLS):
            minutes = c * CELL_MINUTES
            at = datetime(day.year, day.month, day.day, minutes // 60, minutes % 60, tzinfo=zone)
            facts = Facts(caller=who, dialled=dialled, at=at, crm_status=status)
            label, kind, route = _key_of(evaluate_for(policy, facts))
            n = index.get(label)
            if n is None:
                n = index[label] = len(found)
                found.append((label, kind, [route]))
            elif route not in found[n][2]:
                found[n][2].append(route)
            cells.append(n)
        out_days.append(MapDay(day, tuple(cells), _notes(policy, day)))
    keys = tuple(
        MapKey(label, kind, tuple(routes), PALETTE[n % len(PALETTE)], _LETTERS[n % len(_LETTERS)])
        for n, (label, kind, routes) in enumerate(found)
    )
    return WeekMap(dialled, who, policy.settings.timezone, status, tuple(out_days), keys)


def _notes(policy: Policy, day: date) -> tuple[str, ...]:
    notes = []
    for name in sorted(policy.schedules):
        plan = effective_hours(policy.schedules[name], day, 1)[0]
        if plan.note:
            hours = " ".join(plan.windows)
            notes.append(f"{name}: {plan.note}" + (f" ({hours})" if hours else ""))
    return tuple(notes)


# -- rendering --------------------------------------------------------------------------------


def _title(m: WeekMap) -> str:
    return f"Who answers {phone.mask(m.dialled)}"


def _day_title(d: MapDay) -> str:
    return f"{_TITLES[d.day.weekday()]} {d.day}"


def map_text(m: WeekMap) -> str:
    """One line per day, one letter per 15 minutes, a legend; holidays and closures after the row."""
    lines = [
        f"{_title(m)}: times in {m.timezone}, one letter per {CELL_MINUTES} minutes",
        f"for {m.legend_caller}",
        " " * 16 + "".join(f"{h:02d}  " for h in range(24)).rstrip(),
    ]
    for d in m.days:
        row = "".join(m.keys[c].letter for c in d.cells)
        lines.append(f"{_day_title(d)}  {row}" + (f"  * {'; '.join(d.notes)}" if d.notes else ""))
    lines.append("")
    width = max((len(k.label) for k in m.keys), default=0)
    for k in m.keys:
        lines.append(f"  {k.letter}  {k.label.ljust(width)}  {k.kind}, route {', '.join(k.routes)}")
    return "\n".join(lines)


_CELL_W, _ROW_H, _LABEL_W, _TOP = 8, 22, 118, 44


def map_svg(m: WeekMap) -> str:
    """A standalone SVG (presentation attributes only: no style, so a strict CSP shows it inline)."""
    e = html.escape
    grid_w = CELLS * _CELL_W
    notes_w = 360
    legend_top = _TOP + len(m.days) * _ROW_H + 18
    height = legend_top + len(m.keys) * 20 + 26
    width = _LABEL_W + grid_w + notes_w
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12" role="img" '
        f'aria-labelledby="map-title">',
        f'<title id="map-title">{e(_title(m))} ({e(m.timezone)})</title>',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="4" y="16" font-size="14" font-weight="bold">{e(_title(m))}, times in '
        f"{e(m.timezone)}</text>",
    ]
    for h in range(0, 24, 2):
        x = _LABEL_W + h * 4 * _CELL_W
        out.append(f'<text x="{x}" y="{_TOP - 6}" fill="#333333">{h:02d}</text>')
    for r, d in enumerate(m.days):
        y = _TOP + r * _ROW_H
        marked = "*" if d.notes else ""
        out.append(f'<text x="4" y="{y + 15}">{e(_day_title(d))}{marked}</text>')
        run_start = 0
        for c in range(1, CELLS + 1):  # one rect per run of equal cells
            if c == CELLS or d.cells[c] != d.cells[run_start]:
                k = m.keys[d.cells[run_start]]
                x = _LABEL_W + run_start * _CELL_W
                w = (c - run_start) * _CELL_W
                out.append(
                    f'<rect x="{x}" y="{y}" width="{w}" height="{_ROW_H - 4}" fill="{k.colour}">'
                    f"<title>{e(_day_title(d))} {_hhmm(run_start)}-{_hhmm(c)}: {e(k.label)}</title></rect>"
                )
                run_start = c
        if d.notes:
            out.append(
                f'<rect x="{_LABEL_W}" y="{y}" width="{grid_w}" height="{_ROW_H - 4}" fill="none" '
                f'stroke="#000000" stroke-width="2" stroke-dasharray="4 3"/>'
            )
            out.append(
                f'<text x="{_LABEL_W + grid_w + 8}" y="{y + 15}" fill="#7a0000">'
                f"{e('; '.join(d.notes))}</text>"
            )
    for h in range(0, 25, 6):
        x = _LABEL_W + h * 4 * _CELL_W
        out.append(
            f'<line x1="{x}" y1="{_TOP - 2}" x2="{x}" y2="{_TOP + len(m.days) * _ROW_H}" '
            f'stroke="#ffffff" stroke-width="1"/>'
        )
    for i, k in enumerate(m.keys):
        y = legend_top + i * 20
        out.append(f'<rect x="4" y="{y}" width="14" height="14" fill="{k.colour}"/>')
        out.append(
            f'<text x="24" y="{y + 12}">{e(k.label)} ({e(k.kind)}; route {e(", ".join(k.routes))})</text>'
        )
    out.append(
        f'<text x="4" y="{height - 8}" fill="#333333">Each cell: {CELL_MINUTES} minutes, decided for '
        f"{e(m.legend_caller)}. * holidays, closures, special hours.</text>"
    )
    out.append("</svg>")
    return "\n".join(out)


def map_html(m: WeekMap) -> str:
    """A standalone page: the SVG and a legend table (no script, no external resource)."""
    e = html.escape
    rows = "\n".join(
        f"<tr><td>{k.letter}</td><td>{e(k.label)}</td><td>{e(k.kind)}</td>"
        f"<td>{e(', '.join(k.routes))}</td></tr>"
        for k in m.keys
    )
    notes = "\n".join(f"<li>{e(_day_title(d))}: {e('; '.join(d.notes))}</li>" for d in m.days if d.notes)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(_title(m))}</title></head><body>\n<h1>{e(_title(m))}</h1>\n"
        f"<p>Times in {e(m.timezone)}; each cell is {CELL_MINUTES} minutes, decided for "
        f"{e(m.legend_caller)}.</p>\n{map_svg(m)}\n"
        f"<table><thead><tr><th></th><th>target</th><th>kind</th><th>routes</th></tr></thead>"
        f"<tbody>\n{rows}\n</tbody></table>\n"
        + (f"<ul>\n{notes}\n</ul>\n" if notes else "")
        + "</body></html>"
    )


def _hhmm(cell: int) -> str:
    minutes = cell * CELL_MINUTES
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
