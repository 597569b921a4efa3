"""make_state(settings): the state store a policy's `state:` asks for. [I/O edge]"""

from __future__ import annotations

import os
from collections.abc import Mapping

from router.runtime.statefacts import StateSettings
from router.state.base import StateStore


def make_state(settings: StateSettings, env: Mapping[str, str] | None = None) -> StateStore:
    """The store a policy's `state:` asks for (a database is connected lazily, on first use)."""
    if settings.backend == "sqlite":
        from router.state.sqlite import SqliteState

        assert settings.sqlite is not None
        return SqliteState(settings.sqlite, timeout_ms=settings.timeout_ms)
    if settings.backend == "postgres":
        from router.crm.httpparts import ENV_REF, env_value
        from router.state.postgres import PostgresState

        assert settings.dsn is not None
        environ = os.environ if env is None else env
        dsn = ENV_REF.sub(lambda m: env_value(environ, m[1]), settings.dsn)
        return PostgresState(dsn, timeout_ms=settings.timeout_ms)
    from router.state.memory import MemoryState

    return MemoryState()
