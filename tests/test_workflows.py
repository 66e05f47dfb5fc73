"""Every ``kfloop submit`` that CI and the README give is accepted by the compiled pipeline it names:
no required parameter missing, no unknown one, runs created with the account that holds the rights."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from kfloop import config
from kfloop.app import compile as kc
from kfloop.app import submit as ks
from tests.cluster_checks import ROOT


def submit_commands(text: str) -> list[list[str]]:
    """Each ``kfloop submit ...`` command in ``text`` (line continuations joined), as argv."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        m = re.match(r"^\s*(?:\S*/)?kfloop submit (.*)$", line)
        if m:
            out.append(
                shlex.split(re.sub(r"\$\{\{[^}]*\}\}|\"\$\w+\"|\$\w+", "X", m.group(1)), comments=True)
            )
    return out


def _ci_runs() -> str:
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yaml").read_text())
    return "\n".join(step.get("run", "") for job in wf["jobs"].values() for step in job["steps"])


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    return kc.compile_all(tmp_path_factory.mktemp("ir"))


def _check(argv: list[str], packages) -> None:
    pipeline = argv[argv.index("--pipeline") + 1]
    params = ks.parse_params([argv[i + 1] for i, a in enumerate(argv) if a == "--param"])
    if "--spec" in argv:  # relative to the repository root, as CI and the README run it
        params = ks.with_spec(packages[pipeline], params, str(ROOT / argv[argv.index("--spec") + 1]))
    ks.coerce_arguments(packages[pipeline], params)  # raises SubmitError naming the parameter


def test_ci_submissions_match_the_compiled_pipelines(packages):
    cmds = submit_commands(_ci_runs())
    assert {c[c.index("--pipeline") + 1] for c in cmds} == {"training", "monitoring"}
    for argv in cmds:
        _check(argv, packages)
        assert argv[argv.index("--service-account") + 1] == config.ClusterConfig().service_account
        assert "--namespace" in argv


def test_readme_submissions_match_the_compiled_pipelines(packages):
    cmds = submit_commands((ROOT / "README.md").read_text())
    assert cmds, "README shows no kfloop submit"
    for argv in cmds:
        _check(argv, packages)


def test_the_checker_catches_a_missing_required_parameter(packages):
    (argv,) = submit_commands("kfloop submit --pipeline monitoring --param store_uri=gs://b/s\n")
    with pytest.raises(ks.SubmitError, match="missing parameter model_name, source"):
        _check(argv, packages)
