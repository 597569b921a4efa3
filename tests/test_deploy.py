"""The deployment kit parses and runs commands that exist: Dockerfile, Kubernetes, pre-commit, CI."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from router.cli import build_parser
from router.policy.loader import lint_texts

ROOT = Path(__file__).resolve().parents[1]
KUBE = ROOT / "examples" / "kubernetes"


def _docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _subcommands() -> set[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return set(action.choices)  # type: ignore[arg-type]


def _cli_ok(argv: list[str]) -> None:
    """The argv parses with vapi-router's own parser (exits on an unknown flag)."""
    build_parser().parse_args(argv)


def test_kubernetes_manifests_parse_and_fit_together() -> None:
    kinds = {d["kind"]: d for f in sorted(KUBE.glob("*.yml")) for d in _docs(f)}
    assert set(kinds) == {"Deployment", "Service", "ConfigMap", "Secret"}
    deployment = kinds["Deployment"]
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert deployment["spec"]["replicas"] >= 2
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["envFrom"][0]["secretRef"]["name"] == kinds["Secret"]["metadata"]["name"]
    volume = spec["volumes"][0]
    assert volume["configMap"]["name"] == kinds["ConfigMap"]["metadata"]["name"]
    assert kinds["Service"]["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert spec["securityContext"]["runAsNonRoot"] is True


def test_configmap_policy_lints_clean() -> None:
    configmap = next(d for d in _docs(KUBE / "configmap.yml") if d["kind"] == "ConfigMap")
    texts = [(f"configmap/{name}", text) for name, text in configmap["data"].items()]
    loaded = lint_texts(texts)
    assert [str(p) for p in loaded.problems] == []
    assert loaded.policy is not None


def test_dockerfile_runs_serve_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    entry = re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M)
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert entry and cmd
    argv = yaml.safe_load(entry.group(1)) + yaml.safe_load(cmd.group(1))
    assert argv[0] == "vapi-router"
    _cli_ok(argv[1:])
    assert re.search(r"^USER (?!root)\S+$", text, re.M)


def test_pre_commit_hooks_run_existing_commands() -> None:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert {h["id"] for h in hooks} == {"vapi-router-lint", "vapi-router-test"}
    for hook in hooks:
        argv = shlex.split(hook["entry"]) + hook.get("args", [])
        assert argv[0] == "vapi-router"
        _cli_ok(argv[1:])


def test_ci_example_runs_existing_commands() -> None:
    workflow = yaml.safe_load((ROOT / "examples" / "ci" / "vapi-router.yml").read_text())
    runs = [s["run"] for job in workflow["jobs"].values() for s in job["steps"] if "run" in s]
    lines = [line.strip() for run in runs for line in run.splitlines()]
    commands = [line for line in lines if line.startswith("vapi-router ")]
    assert len(commands) >= 3
    for command in commands:
        argv = shlex.split(command.split(">")[0])
        assert argv[0] == "vapi-router"
        assert argv[1] in _subcommands()
        _cli_ok(argv[1:])
