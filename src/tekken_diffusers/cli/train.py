"""`tekken-train`: train a world model. The training code is `training/train_world_model.py` (an accelerate script
beside its YAML configs); this command runs that file's `main`, found next to the installed package's source.

    tekken-train --config training/configs/debug_tiny.yaml --dataset DS --output_dir OUT
    accelerate launch -m tekken_diffusers.cli.train --config ... (several processes or GPUs)

Training options keep their snake_case names (`--output_dir`, `--max_train_steps`): they are the fields of the typed
config, spelled as in the YAML files. Every other command's options are kebab-case.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["TRAINING_DIR_ENV", "find_training_script", "load_training_script", "main", "run_training_script"]

# A folder that holds the training scripts, for an installation that is not a checkout of the repository.
TRAINING_DIR_ENV = "TEKKEN_TRAINING_DIR"


def find_training_script(name: str) -> Path:
    """The path of `training/<name>`: under `$TEKKEN_TRAINING_DIR`, the checkout this package was installed from
    (an editable install), or the current directory, in that order."""
    folders = [Path(os.environ[TRAINING_DIR_ENV])] if os.environ.get(TRAINING_DIR_ENV) else []
    folders += [Path(__file__).resolve().parents[3] / "training", Path.cwd() / "training"]
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"training/{name} not found (looked in {', '.join(str(f) for f in folders)}): the training scripts ship "
        f"with the repository, not the wheel; run from a checkout, or set ${TRAINING_DIR_ENV} to its training/ folder"
    )


def load_training_script(name: str) -> ModuleType:
    """Import `training/<name>` as a module (registered in `sys.modules`, which its dataclasses need)."""
    path = find_training_script(name)
    module_name = f"tekken_diffusers_training.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def run_training_script(name: str, command: str, argv: list[str] | None) -> int:
    """Run `main(argv)` of `training/<name>`; a missing script is one error line and exit code 2."""
    try:
        module = load_training_script(name)
    except FileNotFoundError as error:
        sys.stderr.write(f"{command}: error: {error}\n")
        return 2
    module.main(argv)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run `training/train_world_model.py`'s `main` with these arguments (`--help` lists them)."""
    return run_training_script("train_world_model.py", "tekken-train", argv)


if __name__ == "__main__":
    raise SystemExit(main())
