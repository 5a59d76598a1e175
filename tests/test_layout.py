"""The house: which module may import which. Read from the source with `ast`, so it needs no TensorFlow."""

import ast

from conftest import ROOT

# Layers from the top: a module may import its own layer or one below, never one above.
LAYERS = {
    "fmnist.cli": 4, "fmnist.training": 4, "fmnist.report": 4,  # the flow the entry scripts call
    "fmnist.ship": 3, "fmnist.speed": 3,  # shipping, speed and scale
    "fmnist.run": 2,  # a run's files and their safety
    "fmnist.config": 1, "fmnist.data": 1, "fmnist.models": 1, "fmnist.evaluation": 1, "fmnist.figures": 1,
    "fmnist.explain": 1,  # the core's leaves
    "fmnist": 0, "fmnist.errors": 0,
}
TRAINING_FLOW = ("fmnist.training", "fmnist.report", "fmnist.cli")


def layer(module):
    while module not in LAYERS:
        module = module.rpartition(".")[0]
    return LAYERS[module]


def imports():
    """{module: the fmnist modules it imports, at the top or inside functions}."""
    graph = {}
    for path in sorted((ROOT / "fmnist").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fmnist"):
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names if alias.name.startswith("fmnist")}
        graph[name] = found - {name}
    return graph


def test_every_module_has_a_layer_and_nothing_imports_upward():
    graph = imports()
    assert {"fmnist.run.files", "fmnist.ship.export", "fmnist.speed.devices", "fmnist.models"} <= set(graph)
    upward = [(module, imported) for module, found in graph.items() for imported in found
              if layer(imported) > layer(module)]
    assert upward == [], "a module imports one above it (see LAYERS)"


def test_the_wings_never_import_the_training_flow_and_run_imports_no_other_wing():
    graph = imports()
    for module, found in graph.items():
        if module.startswith(("fmnist.run", "fmnist.ship", "fmnist.speed")):
            assert not found & set(TRAINING_FLOW), module
        if module.startswith("fmnist.run"):
            assert not any(m.startswith(("fmnist.ship", "fmnist.speed")) for m in found), module


def test_there_are_no_import_cycles():
    graph = imports()
    done, path = set(), []

    def visit(module):
        assert module not in path, f"import cycle: {' -> '.join(path[path.index(module):] + [module])}"
        if module in done:
            return
        path.append(module)
        for imported in graph.get(module, ()):
            visit(imported)
        path.pop()
        done.add(module)

    for module in graph:
        visit(module)


def test_each_wing_says_what_it_owns_and_what_it_must_not_import():
    for wing in ("run", "ship", "speed"):
        doc = ast.get_docstring(ast.parse((ROOT / "fmnist" / wing / "__init__.py").read_text()))
        assert doc and "must never import" in doc, wing


def test_the_script_shows_model_fit_on_one_device():
    assert "model.fit(" in (ROOT / "fashion_mnist.py").read_text()
