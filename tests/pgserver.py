"""The real PostgreSQL server the suite starts (bench/pgserver.py, shared with `make bench`)."""

from bench.pgserver import PgServer, init_cluster

__all__ = ["PgServer", "init_cluster"]
