"""The bundled policy set and every example: lint clean, cases pass, every reply is valid Vapi."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from router.policy.envrefs import ENV_REF
from router.policy.loader import lint_path, policy_files
from router.runtime.facttypes import Facts
from router.runtime.model import Policy, Target, Template
from router.runtime.replies import render
from router.tools import cases  # module access keeps pytest from collecting helpers

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
CHECK_REPLY = Path(__file__).resolve().parents[2] / "shared" / "vapi" / "check_reply.py"
NOW = datetime(2026, 11, 16, 15, 0, tzinfo=UTC)  # only for captured requests without a timestamp


def _policy_sets() -> list[Any]:
    """policies/ and each example directory that holds policy files (*.yml neighbours are not)."""
    examples = sorted(d for d in EXAMPLES.iterdir() if d.is_dir() and policy_files(d))
    return [pytest.param(path, id=str(path.relative_to(REPO))) for path in [REPO / "policies", *examples]]


POLICY_SETS = _policy_sets()


def _load(path: Path) -> Policy:
    loaded = lint_path(path)
    assert loaded.policy is not None, "\n".join(map(str, loaded.problems))
    return loaded.policy


@cache
def _vapi_problems() -> Callable[[str, Any], list[str]]:
    """`problems(kind, reply)` from ../shared/vapi/check_reply.py (Vapi's own schemas)."""
    spec = importlib.util.spec_from_file_location("check_reply", CHECK_REPLY)
    assert spec is not None and spec.loader is not None, f"cannot import {CHECK_REPLY}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    problems: Callable[[str, Any], list[str]] = module.problems
    return problems


def _leaves(target: Target) -> Iterator[Target]:
    """The targets that answer: a split's variants, followed down."""
    if target.kind == "split":
        for variant in target.variants:
            yield from _leaves(variant.target)
    else:
        yield target


def _crm_refs(value: object) -> set[str]:
    """Field names of every ${crm.X} in a target body."""
    if isinstance(value, Template):
        return {part[1] for part in value.parts if isinstance(part, tuple) and part[0] == "crm"}
    if isinstance(value, Mapping):
        return {name for v in value.values() for name in _crm_refs(v)}
    if isinstance(value, list):
        return {name for v in value for name in _crm_refs(v)}
    return set()


def _answers(policy: Policy) -> list[tuple[str, str, Target]]:
    """(message kind, route id, target) for every target the policy can answer with."""
    found = [("assistant-request", r.id, r.then) for r in policy.routes]
    others = [policy.default, policy.fallback, *policy.targets.values()]
    found += [("assistant-request", "default", t) for t in others]
    found += [("transfer-destination-request", r.id, r.then) for r in policy.transfers]
    return [(kind, route, leaf) for kind, route, target in found for leaf in _leaves(target)]


def _sample_facts(crm_fields: set[str]) -> Facts:
    return Facts(
        caller="+15555550123",
        dialled="+15555550100",
        at=NOW,
        phone_number_id="00000000-0000-4000-8000-000000000001",
        call_id="00000000-0000-4000-8000-000000000002",
        crm_status="ok",
        tags=frozenset({"vip"}),
        crm={name: f"Sample {name}" for name in sorted(crm_fields)},
    )


# ---------------------------------------------------------------- the tests


def test_examples_root_is_not_a_policy_set() -> None:
    # A *.yaml file here would turn examples/ into one policy set and hide the directories.
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == []


@pytest.mark.parametrize("path", POLICY_SETS)
def test_lints_clean(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As deployed: the secrets an example names are set (unset, each is an [env-unset] warning).
    for file in policy_files(path):
        for name in ENV_REF.findall(file.read_text(encoding="utf-8")):
            monkeypatch.setenv(name, "set-for-the-test")
    loaded = lint_path(path)
    assert [str(p) for p in loaded.problems] == []
    assert loaded.policy is not None


@pytest.mark.parametrize("path", POLICY_SETS)
def test_cases_pass_and_reach_every_route(path: Path) -> None:
    files = cases.case_files(path)
    assert files, f"{path} has no *.test.yaml"
    reached: set[str | None] = set()
    failures: list[str] = []
    for test_file in files:
        policy = _load(cases.policy_path_for(test_file))
        results, problems = cases.run_file(policy, test_file, now=NOW)
        assert [str(p) for p in problems] == []
        failures += [f"{r.file}:{r.line}: {r.name}: {'; '.join(r.failures)}" for r in results if not r.ok]
        reached |= {r.route for r in results}
    assert failures == []
    # `vapi-router test --coverage` checks `routes:` only; transfers need cases too.
    policy = _load(path)
    assert [r.id for r in (*policy.routes, *policy.transfers) if r.id not in reached] == []


@pytest.mark.parametrize("path", POLICY_SETS)
def test_every_reply_passes_vapi_schema(path: Path) -> None:
    policy = _load(path)
    answers = _answers(policy)
    facts = _sample_facts({name for _, _, leaf in answers for name in _crm_refs(leaf.body)})
    check = _vapi_problems()
    problems = []
    for kind, route, leaf in answers:
        reply, _ = render(leaf, facts, route, lenient=True)
        where = f"{leaf.source} ({route}, {kind})"
        problems += [f"{where}: {p}" for p in check(kind, reply)]
    assert problems == []


@pytest.mark.parametrize(
    ("args", "last_line"),
    [
        pytest.param(["lint", "policies", "examples"], None, id="lint"),
        # --coverage does not change the exit code, so read what it says
        pytest.param(
            ["test", "policies", "examples", "--coverage", "--fail-under", "100"],
            "coverage: N of N (100.0%)",
            id="test",
        ),
    ],
)
def test_cli_over_policies_and_examples(args: list[str], last_line: str | None) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "router", *args], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if last_line is not None:
        last = proc.stdout.splitlines()[-1]
        assert re.sub(r"\b\d+ of \d+", "N of N", last) == last_line, last
        assert len(set(re.findall(r"\b\d+\b", last.split("(")[0]))) <= 1, last  # reached == total
