"""The layout shows the design: no module imports, at its top level, a module that imports
it back (directly or around a longer circle), and no module imports a private name or a
private module of another package."""
import ast
import pathlib

import fwdderiv

ROOT = pathlib.Path(fwdderiv.__file__).parent


def module_name(path):
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def resolve(importer, node):
    """The fwdderiv modules a top-level ``import``/``from ... import`` statement names."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in MODULES]
    package = importer if MODULES[importer].name == "__init__.py" else \
        importer.rsplit(".", 1)[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
    if target is None or not target.startswith("fwdderiv"):
        return []
    found = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
    return found or ([target] if target in MODULES else [])


def top_level_imports():
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        graph[name] = {(t, node) for node in tree.body
                       if isinstance(node, (ast.Import, ast.ImportFrom))
                       for t in resolve(name, node)}
    return graph


def circles(graph):
    """Strongly connected sets of modules larger than one (Tarjan's algorithm)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w, _ in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circles_between_modules():
    graph = top_level_imports()
    # a package's __init__ gathering its modules' names is not a circle of design
    graph = {m: {(t, n) for t, n in deps if not (MODULES[t].name == "__init__.py"
                                                   and m.startswith(t + "."))}
             for m, deps in graph.items()}
    assert circles(graph) == []


def test_no_private_module_or_name_is_imported_from_another_package():
    offences = []
    for name, path in MODULES.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            private = [a.name for a in node.names if a.name.startswith("_")]
            for target in resolve(name, node):
                leaf = target.rsplit(".", 1)[-1]
                is_package = MODULES[target].name == "__init__.py"
                home = target if is_package else target.rsplit(".", 1)[0]
                if home != package and (leaf.startswith("_") and not is_package or private):
                    offences.append((name, target, private))
    assert offences == []
