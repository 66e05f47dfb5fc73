"""kfloop's import graph, read with :mod:`ast`: the floors, the cycles and the module sizes (issue 25).

Pure and side-effect free: nothing here imports the modules it reads. Every ``import`` and ``from … import``
counts, wherever it is (module level or inside a function: a lazy import is a real arrow); relative imports
are resolved against the importing module's package; ``importlib.import_module`` / ``__import__`` with a
literal name count, and so does an f-string name whose placeholders each stand for one dotted segment
(``f"kfloop.app.commands.{name}"`` is an arrow to every module it can name). ``from pkg import name`` is an
arrow to ``pkg.name`` where that is a module, else to ``pkg`` (its ``__init__``, whose re-exports are arrows
too). A name not under one of the scanned top-level packages is third-party and ignored. An import under
``if TYPE_CHECKING:`` is a type-only arrow: it counts for the floors (a ground module may not even name a
roof type) but not for cycles (it never runs).

Floors, bottom-up (a module may import its own floor or below, never above):

========  =====================================================================================
ground    ``kfloop/*`` except ``kfloop/app/``
middle    ``components/``, ``serving/``, ``training_image/`` (a component folder may not import another
          component's folder; serving may not import ``components/``)
pipelines ``pipelines/``
roof      ``kfloop/app/`` (may import everything)
========  =====================================================================================

``examples/`` may import the ground floor only, and only the roof may import it.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

#: The scanned top-level packages (the source tree; ``tests/`` and ``benchmarks/`` are not part of it).
SOURCE_PACKAGES = ("kfloop", "components", "serving", "training_image", "pipelines", "examples")
#: A module over this many lines needs a ``Size:`` line in its module docstring saying why it is one module.
MAX_LINES = 500

_FLOOR_RANK = {"ground": 0, "components": 1, "serving": 1, "training_image": 1, "examples": 1, "pipelines": 2}
_SEGMENT = r"[A-Za-z_][A-Za-z0-9_]*"
_SIZE_REASON = re.compile(r"^\s*Size:\s*\S")


@dataclasses.dataclass(frozen=True)
class Module:
    """One ``.py`` file of the tree: its dotted ``name`` and its ``path`` relative to the root (POSIX)."""

    name: str
    path: str
    is_package: bool


@dataclasses.dataclass(frozen=True)
class Arrow:
    """``importer`` imports ``imported`` (dotted module names) at ``path:line``; ``type_only`` under TYPE_CHECKING."""

    importer: str
    imported: str
    path: str
    line: int
    type_only: bool = False


@dataclasses.dataclass(frozen=True)
class Graph:
    """The modules of a tree (by name) and every arrow between them (self-imports dropped)."""

    root: Path
    modules: Mapping[str, Module]
    arrows: tuple[Arrow, ...]

    def edges(self) -> dict[str, set[str]]:
        """Adjacency sets of the arrows that run (not type-only) between the tree's modules."""
        out: dict[str, set[str]] = {name: set() for name in self.modules}
        for a in self.arrows:
            if a.imported in self.modules and not a.type_only:
                out[a.importer].add(a.imported)
        return out


@dataclasses.dataclass(frozen=True)
class LayerViolation:
    """An arrow the floors forbid: ``importer -> imported``, the ``rule`` it breaks and where (``path:line``)."""

    importer: str
    imported: str
    rule: str
    where: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.importer, self.imported)

    def __str__(self) -> str:
        return f"{self.importer} -> {self.imported}: {self.rule} ({', '.join(self.where)})"


class ParseError(ValueError):
    """A source file that :func:`ast.parse` cannot read; the message names the file."""


# ---------------------------------------------------------------------------------------------- discovery


def discover(root: Path, packages: Sequence[str] = SOURCE_PACKAGES) -> dict[str, Module]:
    """Every ``.py`` file under ``root/<package>`` for each of ``packages``, by dotted module name."""
    root = Path(root)
    modules: dict[str, Module] = {}
    for top in packages:
        base = root / top
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(root)
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            parts = list(rel.with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            name = ".".join(parts)
            modules[name] = Module(name=name, path=rel.as_posix(), is_package=is_package)
    return modules


# ------------------------------------------------------------------------------------------------ imports


def _package_of(module: Module) -> str:
    return module.name if module.is_package else module.name.rpartition(".")[0]


def _resolve(name: str, modules: Mapping[str, Module], tops: frozenset[str]) -> str | None:
    """The most specific module of the tree that ``name`` names; None for a third-party name."""
    if not name or name.split(".")[0] not in tops:
        return None
    probe = name
    while probe:
        if probe in modules:
            return probe
        probe = probe.rpartition(".")[0]
    return name  # under a scanned package but no file (yet): keep the name, its floor still counts


def _relative_base(module: Module, level: int, target: str | None) -> str | None:
    parts = _package_of(module).split(".") if _package_of(module) else []
    if level - 1 > len(parts):
        return None
    base = parts[: len(parts) - (level - 1)]
    if target:
        base.append(target)
    return ".".join(base) or None


def _fstring_pattern(node: ast.JoinedStr) -> re.Pattern[str] | None:
    pieces: list[str] = []
    for value in node.values:
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            pieces.append(re.escape(value.value))
        elif isinstance(value, ast.FormattedValue):
            pieces.append(_SEGMENT)
        else:
            return None
    return re.compile("".join(pieces) + r"\Z")


def _is_import_call(node: ast.Call) -> bool:
    func = node.func
    if isinstance(func, ast.Attribute):
        return (
            func.attr == "import_module" and isinstance(func.value, ast.Name) and func.value.id == "importlib"
        )
    return isinstance(func, ast.Name) and func.id in ("import_module", "__import__")


def _call_targets(node: ast.Call, module: Module, modules: Mapping[str, Module]) -> Iterator[str]:
    if not node.args:
        return
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        name = arg.value
        if name.startswith("."):
            package = next((k.value for k in node.keywords if k.arg == "package"), None)
            if not (isinstance(package, ast.Name) and package.id in ("__name__", "__package__")):
                return
            level = len(name) - len(name.lstrip("."))
            base = _relative_base(module, level, name.lstrip(".") or None)
            if base:
                yield base
        else:
            yield name
    elif isinstance(arg, ast.JoinedStr):
        pattern = _fstring_pattern(arg)
        if pattern is not None:
            yield from (m for m in sorted(modules) if pattern.match(m))


def _targets(node: ast.AST, module: Module, modules: Mapping[str, Module]) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
    elif isinstance(node, ast.ImportFrom):
        base = _relative_base(module, node.level, node.module) if node.level else node.module
        if not base:
            return
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            yield sub if alias.name != "*" and sub in modules else base
    elif isinstance(node, ast.Call) and _is_import_call(node):
        yield from _call_targets(node, module, modules)


def parse(root: Path, module: Module) -> ast.Module:
    """The module's syntax tree; :class:`ParseError` naming the file if it does not parse."""
    path = Path(root) / module.path
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=module.path)
    except (SyntaxError, UnicodeDecodeError) as e:
        raise ParseError(f"{module.path}: cannot parse: {e}") from e


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, type_only: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node under ``node`` with whether it sits in the body of an ``if TYPE_CHECKING:``."""
    yield node, type_only
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        yield from _walk(node.test, type_only)
        for child in node.body:
            yield from _walk(child, True)
        for child in node.orelse:
            yield from _walk(child, type_only)
        return
    for child in ast.iter_child_nodes(node):
        yield from _walk(child, type_only)


def module_arrows(root: Path, module: Module, modules: Mapping[str, Module]) -> list[Arrow]:
    """Every arrow out of ``module`` (one per import statement and target), in source order."""
    tops = frozenset(name.split(".")[0] for name in modules)
    arrows: list[Arrow] = []
    for node, type_only in _walk(parse(root, module)):
        for target in _targets(node, module, modules):
            resolved = _resolve(target, modules, tops)
            if resolved is not None and resolved != module.name:
                arrows.append(Arrow(module.name, resolved, module.path, node.lineno, type_only))
    return sorted(set(arrows), key=lambda a: (a.line, a.imported, a.type_only))


def build(root: Path, packages: Sequence[str] = SOURCE_PACKAGES) -> Graph:
    """The import graph of the tree at ``root``."""
    modules = discover(root, packages)
    arrows = [a for m in modules.values() for a in module_arrows(root, m, modules)]
    return Graph(root=Path(root), modules=modules, arrows=tuple(arrows))


# ------------------------------------------------------------------------------------------------- floors


def floor_of(name: str) -> str | None:
    """``ground``, ``components``, ``serving``, ``training_image``, ``pipelines``, ``examples``, ``roof``."""
    top = name.split(".")[0]
    if top == "kfloop":
        return "roof" if name == "kfloop.app" or name.startswith("kfloop.app.") else "ground"
    return top if top in _FLOOR_RANK else None


def _component_folder(name: str, modules: Mapping[str, Module]) -> str | None:
    parts = name.split(".")
    if parts[0] != "components" or len(parts) < 2:
        return None
    folder = f"components.{parts[1]}"
    module = modules.get(folder)
    return folder if len(parts) > 2 or (module is not None and module.is_package) else None


def floor_rule(importer: str, imported: str, modules: Mapping[str, Module]) -> str | None:
    """Why the floors forbid ``importer -> imported``, or None where the arrow is allowed."""
    low, high = floor_of(importer), floor_of(imported)
    if low is None or high is None or low == "roof":
        return None
    if low == "examples":
        return (
            None
            if high in ("ground", "examples")
            else f"examples may import the ground floor only, not {high}"
        )
    if high == "examples":
        return f"only the roof may import examples/, not {low}"
    if high == "roof":
        return f"{low} imports the roof (kfloop/app/)"
    if _FLOOR_RANK[high] > _FLOOR_RANK[low]:
        return f"{low} imports {high}, a floor above it"
    if low == "serving" and high == "components":
        return "serving may not import components/"
    if low == high == "components":
        mine, theirs = _component_folder(importer, modules), _component_folder(imported, modules)
        if mine and theirs and mine != theirs:
            return f"component folder {mine} imports another component's folder ({theirs})"
    return None


def layer_violations(graph: Graph) -> list[LayerViolation]:
    """One entry per forbidden (importer, imported) pair, with every place it is imported."""
    found: dict[tuple[str, str], tuple[str, list[str]]] = {}
    for a in graph.arrows:
        rule = floor_rule(a.importer, a.imported, graph.modules)
        if rule is not None:
            found.setdefault((a.importer, a.imported), (rule, []))[1].append(f"{a.path}:{a.line}")
    return [LayerViolation(k[0], k[1], rule, tuple(where)) for k, (rule, where) in sorted(found.items())]


# ------------------------------------------------------------------------------------------------- cycles


def strongly_connected(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative), each sorted, components sorted by first node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    result: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in edges:
                    continue
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(edges[succ]))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                result.append(sorted(component))
    return sorted(result)


def _shortest_path(start: str, goal: str, edges: Mapping[str, Iterable[str]], members: set[str]) -> list[str]:
    """A shortest path ``start .. goal`` inside ``members`` (breadth-first, neighbours in sorted order)."""
    previous: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier and goal not in previous:
        nxt = []
        for node in frontier:
            for succ in sorted(edges[node]):
                if succ in members and succ not in previous:
                    previous[succ] = node
                    nxt.append(succ)
        frontier = nxt
    path: list[str] = []
    node: str | None = goal
    while node is not None:
        path.append(node)
        node = previous[node]
    return path[::-1]


def _rotated(cycle: list[str]) -> str:
    """``a -> b -> a`` starting at the cycle's smallest module (``cycle`` without the repeated end)."""
    i = cycle.index(min(cycle))
    nodes = cycle[i:] + cycle[:i]
    return " -> ".join([*nodes, nodes[0]])


def cycles(graph: Graph) -> list[str]:
    """The import cycles, as chains ``a -> b -> a`` (each starting at its smallest module), sorted.

    Within each strongly connected component (Tarjan), every arrow is reported with the shortest cycle
    through it: each arrow on a cycle shows up in at least one chain, the list is never longer than the
    arrows (not the exponential count of all elementary cycles), and it is empty exactly when the graph has
    no cycle. Type-only arrows (``if TYPE_CHECKING:``) never run and are not part of it.
    """
    edges = graph.edges()
    chains: set[str] = set()
    for component in strongly_connected(edges):
        members = set(component)
        for u in component:
            for v in sorted(edges[u]):
                if v in members:
                    chains.add(_rotated([u, *_shortest_path(v, u, edges, members)[:-1]]))
    return sorted(chains)


def cycle_arrows(graph: Graph, chain: str) -> list[str]:
    """``path:line`` of each arrow along a chain from :func:`cycles` (for a readable failure)."""
    nodes = chain.split(" -> ")
    out = []
    for a, b in itertools.pairwise(nodes):
        hit = next((x for x in graph.arrows if (x.importer, x.imported) == (a, b) and not x.type_only), None)
        out.append(f"{a} -> {b} at {hit.path}:{hit.line}" if hit else f"{a} -> {b}")
    return out


# --------------------------------------------------------------------------------------------------- size


def has_size_reason(tree: ast.Module) -> bool:
    """True where the module docstring holds a line ``Size: <reason>``."""
    doc = ast.get_docstring(tree, clean=True) or ""
    return any(_SIZE_REASON.match(line) for line in doc.splitlines())


def oversized(graph: Graph, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    """``(path, lines)`` of each module over ``limit`` lines whose docstring gives no ``Size:`` reason."""
    out = []
    for module in sorted(graph.modules.values(), key=lambda m: m.path):
        text = (graph.root / module.path).read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > limit and not has_size_reason(parse(graph.root, module)):
            out.append((module.path, lines))
    return out


# ------------------------------------------------------------------------------------------------- ledger


def ledger(found: Mapping, allowed: Iterable, what: str) -> list[str]:
    """The problems of a check against its allowlist: each new finding, each allowlist entry not needed.

    Args:
        found: ``{key: description}`` of what the check found (the key is what an allowlist entry names).
        allowed: The allowlist's keys.
        what: The kind of finding, for the messages.
    """
    allowed = set(allowed)
    new = [f"new {what}: {found[k]}" for k in sorted(set(found) - allowed, key=str)]
    stale = [
        f"stale allowlist entry, the {what} is gone (remove it): {k}"
        for k in sorted(allowed - set(found), key=str)
    ]
    return new + stale
