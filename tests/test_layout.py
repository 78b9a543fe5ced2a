"""The package's shape: a few modules at the top, one subpackage per concern, small modules,
and no import cycles between modules (counting imports made when a module loads)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "cnnlab"
MAX_LINES = 350


def modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def load_time_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of cnnlab that `name` imports at load time (not inside functions)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    tree = ast.parse(path.read_text())
    for node in tree.body:  # module level only: imports inside functions run later, on demand
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` blocks never run
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in known and m != name}


def test_the_top_of_the_package_holds_few_modules():
    top = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(top) <= 8, top
    subpackages = sorted(p.parent.name for p in ROOT.glob("*/__init__.py"))
    for concern in ("analysis", "cli", "data", "network", "recipes", "report", "runs", "training"):
        assert concern in subpackages


def test_every_module_reads_in_one_sitting():
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_import_cycles():
    mods = modules()
    graph = {name: load_time_imports(name, path, set(mods)) for name, path in mods.items()}
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_the_cycle_check_finds_a_cycle(tmp_path, monkeypatch):
    pkg = tmp_path / "cnnlab"
    (pkg / "x").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "x" / "__init__.py").write_text("")
    (pkg / "x" / "a.py").write_text("from . import b\n")
    (pkg / "x" / "b.py").write_text("from .a import thing\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", pkg)
    try:
        test_no_import_cycles()
    except AssertionError as err:
        assert "cnnlab.x.a" in str(err) and "cnnlab.x.b" in str(err)
    else:
        raise AssertionError("the cycle was not found")


def test_each_subpackage_names_its_public_face_and_every_name_resolves():
    import importlib

    for concern in ("analysis", "data", "network", "training"):
        package = importlib.import_module(f"cnnlab.{concern}")
        assert package.__all__, concern
        for name in package.__all__:
            assert getattr(package, name) is not None, f"cnnlab.{concern}.{name}"
            assert name in dir(package)
        try:
            package.no_such_name  # noqa: B018
        except AttributeError as err:
            assert f"cnnlab.{concern}" in str(err)
        else:
            raise AssertionError("an unknown name resolved")
