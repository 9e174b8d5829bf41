"""The package's layout: no import cycle, counting imports inside functions.

Data flows one way (doc/developer.rst): a module never imports, at any level,
a module that imports it back.  The graph is read from the source with
:mod:`ast` (every ``import`` statement, at module level or inside a function),
so a cycle hidden in a function-level import fails here too.  An edge from a
submodule to its own parent package is left out: importing ``smoothlearn``
from ``smoothlearn.cli`` runs the package's ``__init__``, which the import
system has already started, and re-exporting a submodule from its package is
the usual direction.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "smoothlearn"


def _modules(root=ROOT, package=PACKAGE):
    """Dotted module name -> source file, for every module of the package."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        name = ".".join(path.relative_to(root).with_suffix("").parts)
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
        out[name] = path
    return out


def _targets(module, node, modules):
    """The modules of the package one import statement reads."""
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".")
            if modules[module].name != "__init__.py":
                base = base[:-1]  # relative to the module's package
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        # "from pkg import sub" imports the submodule pkg.sub
        names = [f"{target}.{a.name}" for a in node.names]
        names = [n if n in modules else target for n in names]
    else:
        names = [a.name for a in node.names]
    out = set()
    for name in names:
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]  # "import a.b.c" reads a.b.c's module
        if name in modules and name != module:
            out.add(name)
    return out


def import_graph(root=ROOT, package=PACKAGE):
    """Module -> the package's modules it imports, anywhere in its source."""
    modules = _modules(root, package)
    graph = {}
    for module, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                edges |= _targets(module, node, modules)
        # a submodule importing its own parent package is not a cycle
        graph[module] = {t for t in edges if not module.startswith(t + ".")}
    return graph


def cycles(graph):
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    graph = import_graph()
    assert "smoothlearn.cli" in graph and "smoothlearn.intervals._base" in graph
    found = cycles(graph)
    detail = [
        f"{c}: " + "; ".join(f"{m} -> {sorted(graph[m] & set(c))}" for m in c)
        for c in found
    ]
    assert not found, "import cycles:\n" + "\n".join(detail)


def test_cycle_detector_finds_function_level_cycles(tmp_path):
    # A cycle through an import inside a function, and a relative one between
    # sibling modules of a subpackage, are found; a submodule importing its
    # own package is not a cycle.  (So the test above can fail.)
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "a.py").write_text("def f():\n    from .b import g\n    return g()\n")
    (pkg / "b.py").write_text("import pkg.a\n\ndef g():\n    return 1\n")
    (pkg / "sub" / "__init__.py").write_text("from . import x\n")
    (pkg / "sub" / "x.py").write_text("from .. import sub\nfrom .y import h\n")
    (pkg / "sub" / "y.py").write_text("def h():\n    from .x import h\n")
    graph = import_graph(tmp_path, pkg)
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.a"}
    assert graph["pkg.sub.x"] == {"pkg.sub.y"}
    assert cycles(graph) == [["pkg.a", "pkg.b"], ["pkg.sub.x", "pkg.sub.y"]]
    (pkg / "b.py").write_text("def g():\n    return 1\n")
    (pkg / "sub" / "y.py").write_text("def h():\n    return 1\n")
    assert cycles(import_graph(tmp_path, pkg)) == []
