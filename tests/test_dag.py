"""DAG = imports: each stage's code deps in dvc.yaml are exactly the project files it imports.

A stage's output depends on every project module its script imports, directly or through other
modules, at the top or inside functions. If dvc.yaml missed one, a change to it would leave a
stale output behind a "Data and pipelines are up to date."; if it listed one no longer
imported, a change to it would re-run the stage for nothing. Imports under ``if TYPE_CHECKING:``
never run and do not count; a package ``__init__.py`` counts once it holds more than a docstring.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT

PACKAGES = ("vaelab", "stages")


def module_file(name: str) -> Path | None:
    """The project file of module ``name`` (``vaelab.model.networks`` -> vaelab/model/networks.py), None outside the project."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = PROJECT_ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    raise AssertionError(f"import of {name}, which the project lacks")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_modules(path: Path) -> set[str]:
    """Modules ``path`` imports anywhere (``from vaelab import models`` -> vaelab.model.networks)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if sub.split(".")[0] in PACKAGES and PROJECT_ROOT.joinpath(*sub.split(".")).with_suffix(".py").is_file():
                    found.add(sub)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


def _has_code(init: Path) -> bool:
    body = ast.parse(init.read_text()).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    return any(not (isinstance(n, ast.ImportFrom) and n.module == "__future__") for n in body)


def import_closure(script: Path) -> set[str]:
    """Project files (relative POSIX paths) that running ``script`` imports, ``script`` included."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path):
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                file = module_file(".".join(parts[:depth]))
                if file is not None and (file.name != "__init__.py" or _has_code(file)):
                    todo.append(file)
    return {p.relative_to(PROJECT_ROOT).as_posix() for p in seen if p.name != "__init__.py" or _has_code(p)}


def stages() -> dict[str, dict]:
    return yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]


# Stages that run another stage's script: the four score stages share one (its --sampler says which).
SHARED_SCRIPTS = {"score_prior": "score", "score_gmm": "score", "score_two_stage": "score",
                  "score_reconstructions": "score"}


def stage_script(stage: str) -> str:
    """``stages/<verb>.py``, the script ``stage`` runs: its own name's, or :data:`SHARED_SCRIPTS`'."""
    verb = SHARED_SCRIPTS.get(stage, stage)
    assert f"python -m stages.{verb} " in stages()[stage]["do"]["cmd"], f"stage {stage} should run stages/{verb}.py"
    return f"stages/{verb}.py"


@pytest.mark.parametrize("stage", sorted(stages()))
def test_stage_code_deps_are_its_import_closure(stage):
    do = stages()[stage]["do"]
    script = stage_script(stage)
    listed = {dep for dep in do["deps"] if dep.endswith(".py")}
    needed = import_closure(PROJECT_ROOT / script)
    assert listed == needed, (
        f"dvc.yaml stage {stage}: add {sorted(needed - listed)} (imported) and remove {sorted(listed - needed)} "
        f"(no longer imported)")


def test_a_kinds_sources_file_is_a_dep_of_its_own_download_only():
    # download reads vaelab/data/sources/<kind>.toml for its dataset's kind (load_sources): that
    # file, and no other kind's, is its dep, so a new mirror re-runs that kind's downloads only.
    from vaelab.data.kinds import sources_file

    pattern = "vaelab/data/sources/${item.data.kind}.toml"
    assert sources_file("${item.data.kind}").relative_to(PROJECT_ROOT).as_posix() == pattern
    for stage, body in stages().items():
        data_files = [dep for dep in body["do"]["deps"] if dep.startswith("vaelab/") and not dep.endswith(".py")]
        assert data_files == ([pattern] if stage == "download" else []), (stage, data_files)


def test_the_closure_follows_function_level_imports_and_skips_type_checking(tmp_path):
    # cli.py imports params only inside a function, and kinds/params only for type hints.
    closure = import_closure(PROJECT_ROOT / "stages" / "download.py")
    assert {"vaelab/core/cli.py", "vaelab/core/params.py", "vaelab/data/kinds.py", "vaelab/data/download.py"} <= closure
    assert "vaelab/model/networks.py" not in closure and "vaelab/metrics/features.py" not in closure
    assert "vaelab/__init__.py" not in closure and "vaelab/data/__init__.py" not in closure  # docstrings only


def test_the_loss_curve_plot_lists_the_history_columns():
    from vaelab.model.outputs import HISTORY_COLUMNS

    plot = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["plots"][0]["plots"]
    assert plot["x"] == HISTORY_COLUMNS[0] and sorted(plot["y"]) == sorted(HISTORY_COLUMNS[1:])


# The phases each stage may import: the package boundaries are the cache boundaries, so a change
# to one phase's code re-runs only the stages of that phase and after it.
ALLOWED_PACKAGES = {
    "download": {"core", "data"},
    "preprocess": {"core", "data"},
    "train": {"core", "model", "training"},
    "fit_gmm": {"core", "model"},
    "fit_two_stage": {"core", "model"},
    "reference_stats": {"core", "metrics"},
    "score": {"core", "model", "metrics"},
    "evaluate": {"core", "metrics"},
    "plot": {"core", "model", "figures"},
}


@pytest.mark.parametrize("stage", sorted(ALLOWED_PACKAGES))
def test_stages_import_only_their_phases(stage):
    closure = import_closure(PROJECT_ROOT / "stages" / f"{stage}.py")
    packages = {Path(path).parts[1] for path in closure if path.startswith("vaelab/")}
    assert packages <= ALLOWED_PACKAGES[stage], f"{stage} imports {sorted(packages - ALLOWED_PACKAGES[stage])}"
    assert not any(Path(path).parent == Path("vaelab") for path in closure), \
        f"{stage} imports a module outside the phase packages"


def test_a_model_knob_is_no_dep_of_the_data_or_fid_stages():
    # The schema of the model's knobs is imported by training alone: a new model setting
    # re-runs neither the data stages nor the reference statistics, nor evaluate and plot
    # (which read the saved architecture, not the params).
    for stage in ("download", "preprocess", "reference_stats", "fit_gmm", "fit_two_stage", "score", "evaluate", "plot"):
        closure = import_closure(PROJECT_ROOT / "stages" / f"{stage}.py")
        assert "vaelab/model/params.py" not in closure and "vaelab/training/params.py" not in closure, stage
    assert "vaelab/model/params.py" in import_closure(PROJECT_ROOT / "stages" / "train.py")


def test_a_seed_sweep_never_reruns_the_data_stages_or_the_reference():
    # `seed` is the model's; the splits, the reference sample and the random FID network take
    # `data_seed`, so `dvc exp run -S seed=1` re-runs train and after, nothing before.
    for stage, do in ((name, stage["do"]) for name, stage in stages().items()):
        params = [p if isinstance(p, str) else next(iter(p)) for p in do.get("params", [])]
        if stage in ("download", "preprocess", "reference_stats"):
            assert "seed" not in params, stage
        elif stage == "evaluate":  # joins the score stages' files: it reads no params
            assert params == [], stage
        else:
            assert "seed" in params, stage
    assert "data_seed" in [p for p in stages()["preprocess"]["do"]["params"]]
