"""Time zones that parse but mislead: fixed offsets and tzdata's deprecated names. [pure]

`EST`, `MST` and `HST` never observe daylight saving time, so "EST" in July is an hour off
New York; `EST5EDT`-style and `US/Eastern`-style names are kept by tzdata only for
backward compatibility. Each is a warning naming the IANA zone to write instead (a table,
not tzdata's `backward` file: the package's own zone data need not ship it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence

from router.errors import PolicyError
from router.policy.document import Document, pointer_of

# name -> (why, the zone to use)
FIXED: dict[str, tuple[str, str]] = {
    "EST": ("a fixed UTC-05:00 offset without daylight saving time", "America/New_York"),
    "MST": ("a fixed UTC-07:00 offset without daylight saving time", "America/Denver"),
    "HST": ("a fixed UTC-10:00 offset", "Pacific/Honolulu"),
    "EST5EDT": ("a POSIX-style rule, not a place", "America/New_York"),
    "CST6CDT": ("a POSIX-style rule, not a place", "America/Chicago"),
    "MST7MDT": ("a POSIX-style rule, not a place", "America/Denver"),
    "PST8PDT": ("a POSIX-style rule, not a place", "America/Los_Angeles"),
    "CET": ("a rule, not a place", "Europe/Paris"),
    "MET": ("a rule, not a place", "Europe/Paris"),
    "EET": ("a rule, not a place", "Europe/Athens"),
    "WET": ("a rule, not a place", "Europe/Lisbon"),
}
_DEPRECATED = """
US/Alaska America/Anchorage; US/Aleutian America/Adak; US/Arizona America/Phoenix;
US/Central America/Chicago; US/East-Indiana America/Indiana/Indianapolis;
US/Eastern America/New_York; US/Hawaii Pacific/Honolulu; US/Indiana-Starke America/Indiana/Knox;
US/Michigan America/Detroit; US/Mountain America/Denver; US/Pacific America/Los_Angeles;
US/Samoa Pacific/Pago_Pago; Navajo America/Denver;
Canada/Atlantic America/Halifax; Canada/Central America/Winnipeg; Canada/Eastern America/Toronto;
Canada/Mountain America/Edmonton; Canada/Newfoundland America/St_Johns;
Canada/Pacific America/Vancouver; Canada/Saskatchewan America/Regina; Canada/Yukon America/Whitehorse;
Mexico/BajaNorte America/Tijuana; Mexico/BajaSur America/Mazatlan; Mexico/General America/Mexico_City;
Brazil/Acre America/Rio_Branco; Brazil/DeNoronha America/Noronha; Brazil/East America/Sao_Paulo;
Brazil/West America/Manaus; Chile/Continental America/Santiago; Chile/EasterIsland Pacific/Easter;
Australia/ACT Australia/Sydney; Australia/Canberra Australia/Sydney; Australia/NSW Australia/Sydney;
Australia/Currie Australia/Hobart; Australia/Tasmania Australia/Hobart; Australia/LHI Australia/Lord_Howe;
Australia/North Australia/Darwin; Australia/Queensland Australia/Brisbane;
Australia/South Australia/Adelaide; Australia/Victoria Australia/Melbourne; Australia/West Australia/Perth;
Australia/Yancowinna Australia/Broken_Hill;
Cuba America/Havana; Egypt Africa/Cairo; Eire Europe/Dublin; GB Europe/London; GB-Eire Europe/London;
Hongkong Asia/Hong_Kong; Iceland Atlantic/Reykjavik; Iran Asia/Tehran; Israel Asia/Jerusalem;
Jamaica America/Jamaica; Japan Asia/Tokyo; Kwajalein Pacific/Kwajalein; Libya Africa/Tripoli;
NZ Pacific/Auckland; NZ-CHAT Pacific/Chatham; PRC Asia/Shanghai; Poland Europe/Warsaw;
Portugal Europe/Lisbon; ROC Asia/Taipei; ROK Asia/Seoul; Singapore Asia/Singapore;
Turkey Europe/Istanbul; W-SU Europe/Moscow
"""
DEPRECATED: dict[str, str] = dict(
    entry.split() for entry in _DEPRECATED.replace("\n", " ").split(";") if entry.strip()
)
_ETC_OFFSET = re.compile(r"Etc/GMT([+-])(\d+)")


def zone_advice(name: str) -> str | None:
    """Why `name` should not be used and what to write instead; None when it is a fine name."""
    if name in FIXED:
        why, use = FIXED[name]
        return f'"{name}" is {why}; write the place\'s IANA zone, e.g. "{use}"'
    if name in DEPRECATED:
        return f'"{name}" is a deprecated alias; write "{DEPRECATED[name]}"'
    m = _ETC_OFFSET.fullmatch(name)
    if m and m.group(2) != "0":
        # POSIX sign: Etc/GMT+5 is five hours *behind* UTC.
        offset = f"UTC{'-' if m.group(1) == '+' else '+'}{int(m.group(2)):02d}:00"
        return (
            f'"{name}" is a fixed {offset} offset without daylight saving time; '
            'write the IANA zone of the place whose hours these are (a name like "America/Chicago")'
        )
    return None


def zones_current(docs: Sequence[Document]) -> Iterator[PolicyError]:
    """A `legacy-timezone` warning for settings.timezone and each schedule's timezone."""
    for doc in docs:
        data = doc.data if isinstance(doc.data, Mapping) else {}
        spots: list[tuple[str, object]] = []
        settings = data.get("settings")
        if isinstance(settings, Mapping):
            spots.append((pointer_of("settings", "timezone"), settings.get("timezone")))
        schedules = data.get("schedules")
        if isinstance(schedules, Mapping):
            for name, raw in schedules.items():
                if isinstance(raw, Mapping):
                    spots.append((pointer_of("schedules", str(name), "timezone"), raw.get("timezone")))
        for pointer, zone in spots:
            advice = zone_advice(zone) if isinstance(zone, str) else None
            if advice is not None:
                yield doc.error(pointer, advice, "legacy-timezone", severity="warning")
