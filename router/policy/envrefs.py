"""`${env.NAME}` references that the environment does not set: `env-unset`. [pure]

The environment is passed in (the loader hands over os.environ), so the check stays pure.
Only the CRM and `settings` take `${env.NAME}`; elsewhere the template checks refuse it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from router.errors import PolicyError
from router.policy.document import Document, pointer_of

ENV_REF = re.compile(r"\$\{\s*env\.([A-Za-z_][A-Za-z0-9_]*)\s*\}")
SECTIONS = ("crm", "settings")


def _strings(value: Any, pointer: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield pointer, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(v, pointer + pointer_of(str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, pointer + pointer_of(i))


def env_unset(docs: Sequence[Document], environ: Mapping[str, str]) -> Iterator[PolicyError]:
    """A warning per `${env.NAME}` the environment lacks (an error under `lint --strict`;
    `serve` refuses to start on one), at the string that names it."""
    for doc in docs:
        if not isinstance(doc.data, Mapping):
            continue
        for section in SECTIONS:
            for pointer, text in _strings(doc.data.get(section), pointer_of(section)):
                for name in dict.fromkeys(m.group(1) for m in ENV_REF.finditer(text)):
                    if name not in environ:
                        yield doc.error(
                            pointer,
                            f"${{env.{name}}} is not set in this environment: export {name} "
                            "before `serve` (which refuses to start without it)",
                            "env-unset",
                            severity="warning",
                        )
