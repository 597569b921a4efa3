"""Offline tools over a compiled policy: test cases, replay, reports."""
