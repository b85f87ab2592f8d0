"""deploy/Dockerfile: pinned multi-stage build that runs crdgate as an unprivileged user.

No Docker engine here, so the file is parsed and checked against the repository and the
Deployment that runs the image.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib

import pytest

from crd_support import ROOT, find, kustomize

DOCKERFILE = ROOT / "deploy" / "Dockerfile"
BASE_IMAGE = "python:3.11-slim-bookworm"


def parse(text: str) -> list[list[tuple[str, str]]]:
    """Instructions grouped by stage: [[(INSTRUCTION, arguments), ...], ...]."""
    text = re.sub(r"\\\n", " ", text)  # line continuations
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append([])
        assert stages, f"{instruction} before the first FROM"
        stages[-1].append((instruction, " ".join(args.split())))
    return stages


@pytest.fixture(scope="module")
def stages():
    return parse(DOCKERFILE.read_text())


def _args(stage, instruction):
    return [a for i, a in stage if i == instruction]


def test_two_stages_from_a_pinned_base(stages):
    assert len(stages) == 2
    builder, runtime = (_args(s, "FROM")[0] for s in stages)
    assert builder == f"{BASE_IMAGE} AS builder"
    assert runtime == BASE_IMAGE


def test_builder_makes_wheels_from_the_project(stages):
    builder = stages[0]
    assert any(r.startswith("pip wheel") and r.endswith(" .") for r in _args(builder, "RUN"))
    for copy in _args(builder, "COPY"):
        *sources, _dest = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_builder_copies_every_package_the_wheel_ships(stages):
    # A new top-level package (crdgate/ once) left out of the COPY lines builds a
    # wheel whose console script fails to import.
    copied = {copy.split()[0] for copy in _args(stages[0], "COPY")}
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in patterns:
        assert pattern.rstrip("*") in copied, f"pyproject.toml ships {pattern}; deploy/Dockerfile does not COPY it"


def test_runtime_installs_only_the_wheels(stages):
    runtime = stages[1]
    (install,) = [r for r in _args(runtime, "RUN") if "pip install" in r]
    assert "from=builder" in install and "--no-index" in install
    assert not any("pip wheel" in r for r in _args(runtime, "RUN"))


def test_runs_as_the_deployments_non_root_user(stages):
    users = _args(stages[1], "USER")
    assert users, "the runtime stage must set USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric non-root uid, so runAsNonRoot can verify it"
    pod = find(kustomize("deploy"), "Deployment", "crdgate")["spec"]["template"]["spec"]
    assert int(uid) == pod["securityContext"]["runAsUser"]
    assert not gid or int(gid) == pod["securityContext"]["runAsGroup"]


def test_entrypoint_is_the_crdgate_command(stages):
    (entrypoint,) = _args(stages[1], "ENTRYPOINT")
    assert json.loads(entrypoint) == ["crdgate"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "crdgate" in scripts


def test_exposed_ports_are_the_containers(stages):
    exposed = {int(p) for e in _args(stages[1], "EXPOSE") for p in e.split()}
    container = find(kustomize("deploy"), "Deployment", "crdgate")["spec"]["template"]["spec"]["containers"][0]
    assert exposed == {p["containerPort"] for p in container["ports"]}


def test_dockerignore_keeps_what_the_build_copies(stages):
    ignored = [line.strip() for line in (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for copy in _args(stages[0], "COPY"):
        *sources, _dest = copy.split()
        for source in sources:
            assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source
