"""One rule for commands: every console script in setup.py is `tekken_diffusers.cli.<module>:main`, answers `--help`
in-process with exit code 0, and every file in `scripts/` (and the two programs in `pipelines/`) is a thin entry
point calling one of those `main`s."""

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def console_scripts() -> dict[str, str]:
    """`name -> module:function` from setup.py's `console_scripts`, read without running setup()."""
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    entries = [ast.literal_eval(element) for element in value.elts]
                    return dict(entry.split("=", 1) for entry in entries)
    raise AssertionError("setup.py declares no console_scripts")


SCRIPTS = console_scripts()


def shim_target(path: Path) -> str:
    """The module a shim imports `main` from; fails unless the file is only that import and the `__main__` call."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imports = [node for node in tree.body if isinstance(node, ast.ImportFrom) and node.module]
    assert len(imports) == 1 and [alias.name for alias in imports[0].names] == ["main"], path
    allowed = (ast.ImportFrom, ast.Import, ast.Expr, ast.If)  # the docstring, `os.environ.setdefault(...)`, __main__
    assert all(isinstance(node, allowed) for node in tree.body), f"{path} holds code beyond an entry point"
    assert not any(isinstance(node, (ast.FunctionDef, ast.ClassDef)) for node in ast.walk(tree)), path
    return imports[0].module


def test_every_console_script_is_a_cli_main():
    assert len(SCRIPTS) >= 16
    for name, target in SCRIPTS.items():
        assert name.startswith("tekken-"), name
        assert re.fullmatch(r"tekken_diffusers\.cli\.[a-z_]+:main", target), f"{name} -> {target}"


def test_every_cli_module_has_a_console_script():
    modules = {target.split(":")[0] for target in SCRIPTS.values()}
    cli = ROOT / "src" / "tekken_diffusers" / "cli"
    for path in sorted(cli.glob("*.py")):
        if path.name != "__init__.py":
            assert f"tekken_diffusers.cli.{path.stem}" in modules, f"{path.name} has no console script in setup.py"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_script_answers_help(name, capsys):
    module_name, function = SCRIPTS[name].split(":")
    main = getattr(importlib.import_module(module_name), function)
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("path", sorted((ROOT / "scripts").glob("*.py")), ids=lambda path: path.name)
def test_scripts_are_shims_of_cli_modules(path):
    module = shim_target(path)
    assert module in {target.split(":")[0] for target in SCRIPTS.values()}, f"{path.name} -> {module}"


@pytest.mark.parametrize(("name", "module"), [("generate.py", "generate"), ("app.py", "play")])
def test_pipeline_programs_are_shims_that_leave_the_wait_policy_to_openmp(name, module):
    """They pick threads by timing (runtime.ThreadTuner), which needs GNU OpenMP's own brief spinning for two threads
    to pay on an idle CPU; a forced PASSIVE policy made two threads slower than one (docs/benchmarks.md)."""
    path = ROOT / "pipelines" / name
    assert shim_target(path) == f"tekken_diffusers.cli.{module}"
    assert "OMP_WAIT_POLICY" not in path.read_text(encoding="utf-8")


def test_readme_command_table_matches_setup():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Commands", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(tekken-[a-z0-9-]+)` \| `([a-z_.]+)` \|", section, re.M)
    assert [name for name, _ in rows] == list(SCRIPTS)
    for name, module in rows:
        assert SCRIPTS[name] == f"tekken_diffusers.cli.{module.removesuffix('.py')}:main", name


def test_training_command_runs_the_training_script_by_path():
    from tekken_diffusers.cli.train import find_training_script, load_training_script

    assert find_training_script("train_world_model.py") == ROOT / "training" / "train_world_model.py"
    assert callable(load_training_script("train_vae.py").main)


def test_missing_training_script_is_one_error_line(monkeypatch, tmp_path, capsys):
    from tekken_diffusers.cli import train

    monkeypatch.setattr(train, "__file__", str(tmp_path / "a" / "b" / "c" / "train.py"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(train.TRAINING_DIR_ENV, raising=False)
    assert train.main(["--help"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tekken-train: error: training/train_world_model.py not found") and err.count("\n") == 1
