"""The package's layering (issue 26): no import cycle even counting function-local imports, commands at the top, the
engine beneath the model, and module sizes held to a ratchet.

The import graph is read from the exported source (AST), so a local `from srflow_nb.x import y` inside a function counts
as an edge: a cycle hidden by deferring an import fails here.
"""
import ast
from pathlib import Path

import srflow_nb

PKG = Path(srflow_nb.__file__).parent
TOP = {"cli", "commands", "train_commands"}                  # the top floor: nothing imports them
MAX_LINES = 500
OVERSIZE: dict[str, int] = {}                                # modules still over 500 lines (may not grow): none
MAX_LOCAL_IMPORTS = 8                                        # function-local package imports today: may only fall (cli's keep `srflow --help` fast)


def _imported(node) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        if node.level == 1: return [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
        if node.module and node.module.startswith("srflow_nb"):
            parts = node.module.split(".")[1:]
            return [parts[0]] if parts else [a.name for a in node.names]
    if isinstance(node, ast.Import): return [a.name.split(".")[1] for a in node.names if a.name.startswith("srflow_nb.")]
    return []


def graph() -> tuple[dict[str, set], int]:
    edges, local = {}, 0
    for f in PKG.glob("*.py"):
        if f.stem.startswith("_"): continue
        tree = ast.parse(f.read_text())
        out = {m for node in tree.body for m in _imported(node)}
        for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for node in ast.walk(fn):
                ms = _imported(node)
                local += len(ms); out |= set(ms)
        edges[f.stem] = out - {f.stem}
    return edges, local


def _cycles(g: dict[str, set]) -> list[list[str]]:
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = counter[0]; counter[0] += 1; stack.append(v); on.add(v)
        for w in g.get(v, ()):
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: out.append(sorted(comp))
    for v in list(g):
        if v not in index: visit(v)
    return out


def test_no_import_cycle_even_through_local_imports():
    g, _ = graph()
    assert not _cycles(g), f"import cycles: {_cycles(g)}"


def test_the_top_floor_is_imported_by_nothing():
    g, _ = graph()
    bad = {m: sorted(deps & TOP) for m, deps in g.items() if m not in TOP and deps & TOP}
    assert not bad, f"modules below the commands import them: {bad}"


def test_the_engine_is_beneath_the_model_and_the_registry_at_the_bottom():
    g, _ = graph()
    tree = ast.parse((PKG / "model.py").read_text())
    assert "sampling" in {m for node in tree.body for m in _imported(node)}   # a top-level import: model -> sampling -> engine
    assert "engine" in g["sampling"] and "model" not in g["sampling"] | g["engine"] and g["engine"] <= {"core", "layers"}
    assert g["families"] <= {"core"} and g["ckptfiles"] <= {"core"} and g["core"] == set()
    for m in ("engine", "sampling", "model", "checkpoints", "train"):
        assert not g[m] & {"superresolvers", "evaluate", "explorer", "demo", "commands", "cli"}, (m, g[m])


def test_local_imports_and_module_sizes_only_fall():
    _, local = graph()
    assert local <= MAX_LOCAL_IMPORTS, f"{local} function-local package imports (ratchet {MAX_LOCAL_IMPORTS}): import at the top"
    sizes = {f.stem: len(f.read_text().splitlines()) for f in PKG.glob("*.py") if not f.stem.startswith("_")}
    over = {m: n for m, n in sizes.items() if n > OVERSIZE.get(m, MAX_LINES)}
    assert not over, f"modules over their size limit (500 lines; ratchets {OVERSIZE}): {over}"


def test_every_command_lives_on_the_top_floor():
    "`cli.COMMANDS` names functions of the top floor only: a command is never a function of a library module."
    from srflow_nb.cli import COMMANDS
    below = {c: target for c, (target, _) in COMMANDS.items() if target.split(":")[0].rsplit(".", 1)[-1] not in TOP}
    assert not below, f"commands defined below the top floor: {below}"
