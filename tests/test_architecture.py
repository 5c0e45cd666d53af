"""The package's shape: the library never imports the application, no import cycle anywhere (function-
local imports included), the command line parses without TensorFlow, and the docs the code cites exist."""

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rcn_keras"


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its body (``from a import b`` counts b
    when b is a module, else a)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name.startswith("rcn_keras"))
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rcn_keras"):
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    edges.add(sub if sub in modules else node.module)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def test_library_never_imports_the_application():
    offenders = {m: sorted(e for e in edges if e.startswith("rcn_keras.app"))
                 for m, edges in import_graph().items() if not m.startswith("rcn_keras.app")}
    assert not {m: e for m, e in offenders.items() if e}, offenders


def benchmark_graph() -> dict[str, set[str]]:
    """Benchmark script -> the sibling scripts it imports (they import each other by bare name)."""
    scripts = {p.stem: p for p in (ROOT / "benchmarks").glob("*.py")}
    graph = {}
    for name, path in scripts.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                edges.add(node.module)
        graph[name] = {e for e in edges if e in scripts and e != name}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_import_cycles():
    assert not find_cycles(import_graph())


def test_no_import_cycles_among_the_benchmark_scripts():
    graph = benchmark_graph()
    assert graph["photo_profile"] >= {"_photos"} and graph["photos_end_to_end"] >= {"_photos"}
    assert not find_cycles(graph)
    assert find_cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]


def test_command_line_parses_without_tensorflow():
    code = ("import sys\nfrom rcn_keras.app.cli.main import build_parser\n"
            "p = build_parser()\np.parse_args(['train', '--epochs', '2'])\n"
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
    helped = subprocess.run([sys.executable, "-m", "rcn_keras.app.cli.main", "--help"], capture_output=True,
                            text=True, timeout=120)
    assert helped.returncode == 0 and "usage: rcn" in helped.stdout and helped.stderr == ""


def test_one_version_for_the_command_the_package_and_its_metadata():
    import importlib.metadata

    import rcn_keras

    out = subprocess.run([sys.executable, "-m", "rcn_keras.app.cli.main", "--version"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == f"rcn-keras {rcn_keras.__version__}"
    assert importlib.metadata.version("rcn-keras") == rcn_keras.__version__
    assert "version=VERSION" in (ROOT / "setup.py").read_text()  # setup.py reads it, writes none of its own
    assert f'version: "{rcn_keras.__version__}"' in (ROOT / "CITATION.cff").read_text()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert importlib.metadata.metadata("rcn-keras")["License"] == "MIT"


def test_cited_documents_are_in_the_repository():
    import re

    text = "\n".join(p.read_text() for p in PACKAGE.rglob("*.py"))
    assert "shared/design" not in text and not re.search(r"\bspec (sections? )?\d", text)
    assert (ROOT / "docs" / "model.md").is_file()
    readme = (ROOT / "README.md").read_text()
    assert "../shared/design" not in readme
    layout = (ROOT / "docs" / "development.md").read_text()
    for path in PACKAGE.rglob("*.py"):  # the development page's layout tree names every module
        if path.name != "__init__.py":
            assert path.name in layout, f"docs/development.md layout misses {path.relative_to(ROOT)}"
