"""The import structure of the apps, read from the source with `ast` (nothing is imported).

The layers run one way, bottom to top: `oasst` (users, settings, platform plumbing) < `ranking`
(points, leaderboards, consensus, rankings) < `tasks` (queue, messages, trees, content moderation,
exports) < `training` (reads export files and its own tables). A module may import its own app and
the apps below it; the composition root (settings, URLs, WSGI/ASGI, the Celery app) may name any
app. Every import of the project's own modules counts: at module level and inside functions,
`import a.b`, `from a import b` and relative ones. Each rule in RULES is its own test
(`test_project_keeps_the_rule[<rule>]`); the `test_checker_*` tests run the same checks on tiny
synthetic packages to prove that each can fail.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]

LAYERS = ("oasst", "ranking", "tasks", "training")

COMPOSITION_ROOT = frozenset(
    {"oasst/settings.py", "oasst/urls.py", "oasst/wsgi.py", "oasst/asgi.py", "oasst/celery.py"}
)

MAX_MODULE_LINES = 450

# Modules allowed over MAX_MODULE_LINES: path -> reason. Meant to stay empty.
OVERSIZE_ALLOWLIST: dict[str, str] = {}

# A function-level import of a project module needs a comment, on its line or in the comment block
# right above, that starts with one of these tags and says why, e.g. `# heavy: torch is optional`.
FUNCTION_IMPORT_TAGS = ("heavy:", "cycle:", "app-registry:")

# Function-level imports allowed without such a comment: "path:imported.module" -> reason.
FUNCTION_IMPORT_ALLOWLIST: dict[str, str] = {}


@dataclass(frozen=True)
class Import:
    """One project module imported by another (an edge of the module graph)."""

    source: str  # importing module, dotted
    path: str  # importing file, relative to the root, with forward slashes
    line: int
    target: str  # imported project module, dotted
    in_function: bool

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class PrivateUse:
    path: str
    line: int
    target: str
    name: str


@dataclass
class Project:
    root: Path
    modules: dict[str, Path]  # dotted name -> file
    imports: list[Import]
    private_uses: list[PrivateUse]


def module_name(relative: Path) -> str:
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(root: Path, apps: tuple[str, ...] = LAYERS) -> dict[str, Path]:
    modules = {}
    for app in apps:
        for path in sorted((root / app).rglob("*.py")):
            relative = path.relative_to(root)
            if "migrations" in relative.parts or "__pycache__" in relative.parts:
                continue
            modules[module_name(relative)] = path
    return modules


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    package = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        package = package[: len(package) - (level - 1)]
    return ".".join([*package, name] if name else package)


class _ImportVisitor(ast.NodeVisitor):
    """Collects the imports of one file and the private attributes read off imported modules.

    `from a.b import c` is an edge to the module a.b.c where that exists, else to a.b. The packages
    that Python runs on the way (a, a.b) are no edges: a package whose __init__ re-exports its
    submodules would otherwise always close a cycle with them.
    """

    def __init__(self, module: str, path: str, is_package: bool, known: set[str], apps: tuple[str, ...]):
        self.module = module
        self.path = path
        self.is_package = is_package
        self.known = known
        self.apps = apps
        self.depth = 0
        self.imports: list[Import] = []
        self.private_uses: list[PrivateUse] = []
        self.bound_modules: dict[str, str] = {}  # local name -> dotted prefix it stands for

    def _is_project(self, dotted: str) -> bool:
        return dotted.split(".")[0] in self.apps

    def _known_module(self, dotted: str) -> str | None:
        """The longest known module that `dotted` names or lies in."""
        parts = dotted.split(".")
        for end in range(len(parts), 0, -1):
            candidate = ".".join(parts[:end])
            if candidate in self.known:
                return candidate
        return None

    def _add(self, node: ast.stmt, target: str) -> None:
        if target != self.module:
            self.imports.append(Import(self.module, self.path, node.lineno, target, self.depth > 0))

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function
    visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not self._is_project(alias.name):
                continue
            target = self._known_module(alias.name)
            if target:
                self._add(node, target)
            if alias.asname:
                self.bound_modules[alias.asname] = alias.name
            else:
                top = alias.name.split(".")[0]
                self.bound_modules[top] = top
            parts = alias.name.split(".")
            for position, part in enumerate(parts[1:], start=1):
                if is_private(part) and target != self.module:
                    self.private_uses.append(PrivateUse(self.path, node.lineno, ".".join(parts[:position]), part))
                    break

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = resolve_relative(self.module, self.is_package, node.level, node.module)
        else:
            base = node.module or ""
        if not self._is_project(base):
            return
        base_module = self._known_module(base)
        takes_names = False
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if submodule in self.known:
                self._add(node, submodule)
                self.bound_modules[alias.asname or alias.name] = submodule
            else:
                takes_names = True
            if is_private(alias.name) and (base_module or base) != self.module:
                self.private_uses.append(PrivateUse(self.path, node.lineno, base, alias.name))
        if base_module and takes_names:
            self._add(node, base_module)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = []
        value: ast.expr = node
        while isinstance(value, ast.Attribute):
            chain.append(value.attr)
            value = value.value
        if isinstance(value, ast.Name) and value.id in self.bound_modules:
            chain.reverse()
            dotted = self.bound_modules[value.id]
            for attr in chain:
                if f"{dotted}.{attr}" in self.known:
                    dotted = f"{dotted}.{attr}"
                    continue
                if is_private(attr) and dotted in self.known and dotted != self.module:
                    self.private_uses.append(PrivateUse(self.path, node.lineno, dotted, attr))
                break
            return  # the whole chain is handled; inner Attribute nodes are its prefixes
        self.generic_visit(node)


def read_project(root: Path, apps: tuple[str, ...] = LAYERS) -> Project:
    modules = source_files(root, apps)
    known = set(modules)
    imports: list[Import] = []
    private_uses: list[PrivateUse] = []
    for name, path in modules.items():
        relative = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
        visitor = _ImportVisitor(name, relative, path.name == "__init__.py", known, apps)
        visitor.visit(tree)
        imports.extend(visitor.imports)
        private_uses.extend(visitor.private_uses)
    return Project(root, modules, imports, private_uses)


def layer_violations(project: Project, apps: tuple[str, ...] = LAYERS) -> list[str]:
    rank = {app: index for index, app in enumerate(apps)}
    found = []
    for edge in project.imports:
        if edge.path in COMPOSITION_ROOT:
            continue
        source_app, target_app = edge.source.split(".")[0], edge.target.split(".")[0]
        if rank[target_app] > rank[source_app]:
            kind = "function-level " if edge.in_function else ""
            found.append(
                f"{edge.where}: {edge.source} {kind}imports {edge.target} ({target_app} is above {source_app})"
            )
    return found


def strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (the graph of a large project would overflow recursion)."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = lowlink[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = lowlink[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.get(successor, ())))))
                    advanced = True
                    break
                if successor in on_stack:
                    lowlink[node] = min(lowlink[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                lowlink[parent] = min(lowlink[parent], lowlink[node])
            if lowlink[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def shortest_cycle(start: str, graph: dict[str, set[str]], members: set[str]) -> list[str]:
    """The shortest loop from `start` back to it inside one component (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph[node] & members):
                if successor == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if successor not in previous:
                    previous[successor] = node
                    following.append(successor)
        frontier = following
    return [start]


def import_cycles(project: Project) -> list[str]:
    graph: dict[str, set[str]] = {name: set() for name in project.modules}
    where: dict[tuple[str, str], str] = {}
    for edge in project.imports:
        graph[edge.source].add(edge.target)
        where.setdefault((edge.source, edge.target), edge.where)
    found = []
    for component in strongly_connected_components(graph):
        if len(component) < 2:
            continue
        loop = shortest_cycle(component[0], graph, set(component))
        steps = " -> ".join(f"{a} ({where[a, b]})" for a, b in pairwise(loop))
        members = set(component)
        inside = sorted(f"{a} -> {b} ({place})" for (a, b), place in where.items() if a in members and b in members)
        found.append(
            f"cycle of {len(component)} modules {component}; e.g. {steps} -> {loop[-1]}; "
            f"its imports: {'; '.join(inside)}"
        )
    return found


def private_imports(project: Project) -> list[str]:
    return [
        f"{use.path}:{use.line}: uses private name {use.name!r} of {use.target}"
        for use in sorted(project.private_uses, key=lambda use: (use.path, use.line, use.name))
    ]


def _comments_by_line(source: str) -> dict[int, str]:
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    return comments


def function_level_imports(project: Project) -> list[Import]:
    return [edge for edge in project.imports if edge.in_function]


def reason_comments(source: str, line: int) -> list[str]:
    """The comment on `line` and the block of comment-only lines right above it."""
    comments = _comments_by_line(source)
    lines = source.splitlines()
    found = [comments[line]] if line in comments else []
    above = line - 1
    while above >= 1 and lines[above - 1].lstrip().startswith("#"):
        found.append(comments[above])
        above -= 1
    return found


def unexplained_function_imports(project: Project) -> list[str]:
    sources: dict[str, str] = {}
    found = []
    for edge in function_level_imports(project):
        if f"{edge.path}:{edge.target}" in FUNCTION_IMPORT_ALLOWLIST:
            continue
        if edge.path not in sources:
            sources[edge.path] = (project.root / edge.path).read_text(encoding="utf-8")
        if not any(
            comment.startswith(FUNCTION_IMPORT_TAGS) for comment in reason_comments(sources[edge.path], edge.line)
        ):
            found.append(f"{edge.where}: {edge.source} imports {edge.target} inside a function")
    return found


def oversized_modules(project: Project, limit: int = MAX_MODULE_LINES) -> list[str]:
    found = []
    for path in project.modules.values():
        relative = path.relative_to(project.root).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > limit and relative not in OVERSIZE_ALLOWLIST:
            found.append(f"{relative}: {lines} lines (limit {limit})")
    return sorted(found)


@pytest.fixture(scope="module")
def project() -> Project:
    return read_project(PROJECT_ROOT)


def test_the_checker_reads_every_app(project):
    apps = {name.split(".")[0] for name in project.modules}
    assert apps == set(LAYERS)
    assert {edge.target.split(".")[0] for edge in project.imports} == set(LAYERS)


RULES = {
    "imports_run_down_the_layers": (
        layer_violations,
        "imports run back up the layers (oasst < ranking < tasks < training)",
        "Move the code up to the importing app's caller, or send a signal defined in the lower app "
        "and connect its receiver in the upper app's AppConfig.ready().",
    ),
    "no_import_cycles_between_modules": (
        import_cycles,
        "import cycles (module-level and function-level imports both count)",
        "Move the shared code into a small module both can import, or invert the dependency with a signal.",
    ),
    "no_private_names_used_across_modules": (
        private_imports,
        "private names used across modules",
        "Give the helper a public name, or move it into a small public module of its own.",
    ),
    "function_level_imports_say_why": (
        unexplained_function_imports,
        "function-level imports of project modules without a reason",
        f"Import at the top of the module, or put a comment starting with one of {FUNCTION_IMPORT_TAGS} "
        "on the line or in the comment block right above, saying why it cannot be at the top.",
    ),
    "modules_stay_readable_in_one_sitting": (
        oversized_modules,
        f"modules over {MAX_MODULE_LINES} lines",
        "Split them along the seams they already have.",
    ),
}


@pytest.mark.parametrize("rule", RULES)
def test_project_keeps_the_rule(project, rule):
    check, title, advice = RULES[rule]
    found = check(project)
    assert not found, f"{len(found)} {title}:\n  " + "\n  ".join(found) + f"\n{advice}"


def test_allowlists_name_existing_files():
    for key in [*OVERSIZE_ALLOWLIST, *FUNCTION_IMPORT_ALLOWLIST]:
        assert (PROJECT_ROOT / key.split(":")[0]).is_file(), f"stale allowlist entry {key}"


# The checker on synthetic packages: each rule must fail when it is broken.


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for app in LAYERS:
        (root / app).mkdir(parents=True, exist_ok=True)
        (root / app / "__init__.py").touch()
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


CLEAN_TREE = {
    "oasst/models.py": "class User:\n    pass\n",
    "oasst/services.py": "from oasst.models import User\n",
    "ranking/services.py": "from oasst import models\nimport oasst.services\n",
    "tasks/services/__init__.py": "from tasks.services.queue import task_request\n",
    "tasks/services/queue.py": "from ranking.services import x\n\ndef task_request():\n    pass\n",
    "tasks/api.py": "from . import services\nfrom .services.queue import task_request\n",
    "training/jobs.py": "def run():\n    # heavy: torch is optional\n    from training import ppo\n",
    "training/ppo.py": "import tasks.api\n",
    "oasst/urls.py": "from training import jobs\n",
    "oasst/migrations/0001_initial.py": "from tasks.api import services\n",
}


def test_checker_passes_a_clean_tree(tmp_path):
    clean = read_project(write_tree(tmp_path, CLEAN_TREE))
    assert layer_violations(clean) == []
    assert import_cycles(clean) == []
    assert private_imports(clean) == []
    assert unexplained_function_imports(clean) == []
    assert oversized_modules(clean) == []
    assert "oasst.migrations.0001_initial" not in clean.modules


def test_checker_resolves_relative_and_submodule_imports(tmp_path):
    clean = read_project(write_tree(tmp_path, CLEAN_TREE))
    targets = {(edge.source, edge.target) for edge in clean.imports}
    assert ("tasks.api", "tasks.services") in targets
    assert ("tasks.api", "tasks.services.queue") in targets
    assert ("ranking.services", "oasst.models") in targets
    assert ("ranking.services", "oasst.services") in targets
    assert ("tasks.services.queue", "ranking.services") in targets
    assert [edge.in_function for edge in clean.imports if edge.source == "training.jobs"] == [True]


def test_checker_finds_a_back_edge_at_module_and_function_level(tmp_path):
    tree = write_tree(
        tmp_path,
        {
            **CLEAN_TREE,
            "oasst/services.py": "from tasks.services import queue\n",
            "ranking/events.py": "def on_event():\n    from training.jobs import run\n",
        },
    )
    found = layer_violations(read_project(tree))
    assert found == [
        "oasst/services.py:1: oasst.services imports tasks.services.queue (tasks is above oasst)",
        "ranking/events.py:2: ranking.events function-level imports training.jobs (training is above ranking)",
    ]


def test_checker_finds_a_cycle_through_a_function_level_import(tmp_path):
    tree = write_tree(
        tmp_path,
        {
            **CLEAN_TREE,
            "tasks/services/queue.py": "from tasks import selectors\n",
            "tasks/selectors.py": "def pick():\n    from tasks.trees import lock\n",
            "tasks/trees.py": "from tasks.services.queue import lock\n",
        },
    )
    found = import_cycles(read_project(tree))
    assert len(found) == 1
    assert "['tasks.selectors', 'tasks.services.queue', 'tasks.trees']" in found[0]
    assert "tasks.selectors (tasks/selectors.py:2) -> tasks.trees" in found[0]


def test_checker_finds_private_names_imported_or_read_across_modules(tmp_path):
    tree = write_tree(
        tmp_path,
        {
            **CLEAN_TREE,
            "training/reward.py": "def _pyplot():\n    pass\n",
            "training/dpo.py": "from training.reward import _pyplot\nfrom .reward import _pyplot as p\n",
            "training/sft.py": "from training import reward\nimport training.reward\n"
            "reward._pyplot()\ntraining.reward._pyplot()\nreward.__name__\n",
            "training/_private.py": "",
            "training/pairs.py": "import training._private\n",
        },
    )
    assert private_imports(read_project(tree)) == [
        "training/dpo.py:1: uses private name '_pyplot' of training.reward",
        "training/dpo.py:2: uses private name '_pyplot' of training.reward",
        "training/pairs.py:1: uses private name '_private' of training",
        "training/sft.py:3: uses private name '_pyplot' of training.reward",
        "training/sft.py:4: uses private name '_pyplot' of training.reward",
    ]


def test_checker_wants_a_reason_for_function_level_imports(tmp_path):
    tree = write_tree(
        tmp_path,
        {
            **CLEAN_TREE,
            "training/jobs.py": "def run():\n    from training import ppo  # a comment without a tag\n",
        },
    )
    assert unexplained_function_imports(read_project(tree)) == [
        "training/jobs.py:2: training.jobs imports training.ppo inside a function"
    ]


def test_checker_reads_a_reason_in_the_comment_block_above(tmp_path):
    tree = write_tree(
        tmp_path,
        {
            **CLEAN_TREE,
            "training/jobs.py": "def run():\n    # heavy: torch is optional,\n    # and slow to import\n"
            "    from training import ppo\n\n\ndef later():\n    # no reason here\n\n    from training import ppo\n",
        },
    )
    assert unexplained_function_imports(read_project(tree)) == [
        "training/jobs.py:10: training.jobs imports training.ppo inside a function"
    ]


def test_checker_finds_oversized_modules(tmp_path):
    tree = write_tree(tmp_path, {**CLEAN_TREE, "tasks/big.py": "x = 1\n" * (MAX_MODULE_LINES + 1)})
    assert oversized_modules(read_project(tree)) == [f"tasks/big.py: {MAX_MODULE_LINES + 1} lines (limit 450)"]


def test_composition_root_may_name_upper_apps(tmp_path):
    tree = write_tree(tmp_path, {**CLEAN_TREE, "oasst/celery.py": "import training.jobs\n"})
    assert layer_violations(read_project(tree)) == []
