"""What the accelerate training scripts share: typed YAML configs, atomic checkpoints, resuming, trackers, signals."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import shutil
import signal
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .utils import atomic_output, move_into_place

logger = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_PATTERN",
    "ConfigError",
    "load_config",
    "add_config_arguments",
    "list_checkpoints",
    "save_checkpoint",
    "resolve_resume",
    "register_checkpoint_hooks",
    "resume_from_checkpoint",
    "save_ema",
    "load_ema",
    "config_overrides",
    "save_pretrained_atomically",
    "trim_loss_history",
    "resolve_trackers",
    "StopSignal",
]

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")


class ConfigError(ValueError):
    """A config file or override that does not match the config dataclass.

    Attributes:
        unknown: the settings it names that the dataclass does not have (empty for other errors).
    """

    def __init__(self, message: str, unknown: list[str] | None = None):
        super().__init__(message)
        self.unknown = unknown or []


# ---------------------------------------------------------------------------------------------------------------------
# Configs: one dataclass fully describes the YAML; unknown keys are an error.
# ---------------------------------------------------------------------------------------------------------------------
def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, annotation: Any, name: str, source: str) -> Any:
    """Check (and minimally convert) a YAML/CLI value against a field's type annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, name, source)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{source}: {name}: unexpected value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {name}: expected a list, got {value!r}")
        (item_type, *_) = typing.get_args(annotation) or (Any,)
        items = [_coerce(item, item_type, name, source) for item in value]
        return tuple(items) if origin is tuple else items
    if origin is dict or annotation is dict:
        if isinstance(value, str):  # from the command line: '{"prev_frame_conditioning": true}' (YAML or JSON)
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                pass
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {name}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{source}: {name}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isdigit())
        ):
            raise ConfigError(f"{source}: {name}: expected an integer, got {value!r}")
        return int(value)
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{source}: {name}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: {name}: expected a number, got {value!r}") from None
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{source}: {name}: expected a string, got {value!r}")
        return str(value)
    return value


def load_config(cls: type, path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None):
    """Build the config dataclass `cls` from a YAML file and then `overrides` (e.g. from the command line).

    Raises:
        ConfigError: for an unknown key (naming the known ones), a value of the wrong type, or what the dataclass's
            own `__post_init__` refuses.
    """
    types_ = _field_types(cls)
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of settings, found {type(loaded).__name__}")
        for key, value in loaded.items():
            if key not in types_:
                known = ", ".join(sorted(types_))
                unknown = sorted(set(loaded) - set(types_))
                raise ConfigError(f"{path}: unknown setting {key!r}; known settings: {known}", unknown)
            values[key] = _coerce(value, types_[key], key, str(path))
    for key, value in (overrides or {}).items():
        if key not in types_:
            raise ConfigError(f"unknown setting {key!r}; known settings: {', '.join(sorted(types_))}", [key])
        values[key] = _coerce(value, types_[key], key, "command line")
    try:
        return cls(**values)
    except TypeError as error:
        raise ConfigError(f"{path or 'config'}: {error}") from None
    except ValueError as error:
        raise ConfigError(str(error)) from None


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One `--name VALUE` option per config field (all optional; unset options keep the YAML's value).

    A list field takes its values one after another (`--name 1 2 3`); a `bool` field also works as a flag:
    `--name` alone sets it and `--no-name` clears it.
    """
    types_ = _field_types(cls)
    for f in dataclasses.fields(cls):
        doc = (f.metadata or {}).get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        help_text = f"{doc} (default: {default!r})" if doc else f"default: {default!r}"
        if types_[f.name] is bool:
            parser.add_argument(f"--{f.name}", default=None, nargs="?", const="true", help=help_text)
            parser.add_argument(
                f"--no-{f.name}", dest=f.name, action="store_const", const="false", help=f"same as --{f.name} false"
            )
            continue
        parser.add_argument(
            f"--{f.name}", default=None, nargs="+" if isinstance(default, (list, tuple)) else None, help=help_text
        )


def config_overrides(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The config fields set on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name) is not None}


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints: `checkpoint-N` folders written by accelerator.save_state into a temporary name, renamed when complete.
# ---------------------------------------------------------------------------------------------------------------------
def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete `checkpoint-N` folders, oldest first (temporary `.checkpoint-N.tmp` folders are ignored)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := CHECKPOINT_PATTERN.match(p.name))]
    return [path for _, path in sorted(found)]


def save_checkpoint(accelerator, output_dir: str | os.PathLike, global_step: int, total_limit: int | None) -> Path:
    """`accelerator.save_state` into `.checkpoint-N.tmp`, renamed to `checkpoint-N` when complete; then prunes the
    oldest so that at most `total_limit` remain. A run killed at any moment leaves only complete checkpoints."""
    output_dir = Path(output_dir)
    final = output_dir / f"checkpoint-{global_step}"
    temporary = output_dir / f".checkpoint-{global_step}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(temporary, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        move_into_place(temporary, final)
        if total_limit is not None:
            existing = list_checkpoints(output_dir)
            for old in existing[: max(0, len(existing) - total_limit)]:
                logger.info("removing old checkpoint %s", old)
                shutil.rmtree(old)
        logger.info("saved %s", final)
    accelerator.wait_for_everyone()
    return final


def resolve_resume(spec: str | None, output_dir: str | os.PathLike) -> Path | None:
    """The checkpoint to resume from: None (fresh run), the newest for `latest`, else the named folder."""
    if spec is None:
        return None
    if spec == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            logger.info("no checkpoint-N in %s; starting a new run", output_dir)
            return None
        return checkpoints[-1]
    path = Path(spec)
    if not path.is_dir() and (Path(output_dir) / path).is_dir():
        path = Path(output_dir) / path
    if not path.is_dir() or not CHECKPOINT_PATTERN.match(path.name):
        raise FileNotFoundError(f"--resume_from_checkpoint {spec}: no checkpoint-N folder there")
    return path


def trim_loss_history(path: str | os.PathLike, step: int) -> None:
    """Drop the rows after `step` from a `loss_history.jsonl` (atomically): a run resumed from checkpoint `step`
    computes those steps again, and a history must hold each step once."""
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row_step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a kill
        if row_step <= step:
            kept.append(line + "\n")
    with atomic_output(path) as tmp:
        tmp.write_text("".join(kept), encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------------------
# What a checkpoint holds besides accelerate's own state: the model as a diffusers folder, and its EMA.
# ---------------------------------------------------------------------------------------------------------------------
EMA_STATE_FILE = "ema_state.json"


def save_ema(ema, folder: str | os.PathLike, name: str) -> None:
    """The EMA weights as a diffusers folder `{name}_ema/` (a usable model) and its counters (decay, step, …) in
    `ema_state.json`."""
    folder = Path(folder)
    state = ema.state_dict()
    state.pop("shadow_params")
    model = ema.model_cls.from_config(ema.model_config)
    ema.copy_to(model.parameters())
    model.save_pretrained(folder / f"{name}_ema")
    (folder / EMA_STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")


def load_ema(ema, folder: str | os.PathLike, name: str) -> None:
    """Restore what `save_ema` wrote into `ema`, its weights on the device they were on.

    Checkpoints written before `ema_state.json` existed hold the counters in `{name}_ema/config.json`, as diffusers'
    `EMAModel.save_pretrained` writes them; those load too.
    """
    folder = Path(folder)
    device = ema.shadow_params[0].device if ema.shadow_params else None
    state_path = folder / EMA_STATE_FILE
    if state_path.is_file():
        state = json.loads(state_path.read_text(encoding="utf-8"))
        model = ema.model_cls.from_pretrained(folder / f"{name}_ema")
        state["shadow_params"] = [parameter.detach().clone() for parameter in model.parameters()]
    else:
        from diffusers.training_utils import EMAModel

        state = EMAModel.from_pretrained(str(folder / f"{name}_ema"), ema.model_cls).state_dict()
    ema.load_state_dict(state)
    if device is not None:
        ema.to(device)


def register_checkpoint_hooks(accelerator, model_cls: type, name: str, ema=None) -> None:
    """Make `accelerator.save_state` / `load_state` keep the prepared model as a diffusers folder `name/` (instead of
    pickling it) and, with an `EMAModel`, its EMA (`save_ema`): a checkpoint is then also a set of usable models.

    Args:
        accelerator: the run's `Accelerator`; call this before `accelerator.prepare`.
        model_cls: the model's class (a diffusers `ModelMixin`), which loads `name/` back.
        name: the model's folder in a checkpoint, e.g. `"transformer"` or `"vae"`.
        ema: the run's `diffusers.training_utils.EMAModel` of the model, if it keeps one.
    """

    def save_model_hook(models: list, weights: list, folder: str) -> None:
        if accelerator.is_main_process:
            if ema is not None:
                save_ema(ema, folder, name)
            for saved in models:
                accelerator.unwrap_model(saved).save_pretrained(os.path.join(folder, name))
        for _ in range(len(weights)):
            weights.pop()  # accelerate must not pickle the model as well

    def load_model_hook(models: list, folder: str) -> None:
        if ema is not None:
            load_ema(ema, folder, name)
        for _ in range(len(models)):
            target = models.pop()
            loaded = model_cls.from_pretrained(folder, subfolder=name)
            accelerator.unwrap_model(target).load_state_dict(loaded.state_dict())

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)


def resume_from_checkpoint(accelerator, checkpoint: Path | None) -> int:
    """Load a `checkpoint-N` folder (from `resolve_resume`) into everything the accelerator prepared, through the
    hooks of `register_checkpoint_hooks`, and return its step N: the step the run continues from (0 without one)."""
    if checkpoint is None:
        return 0
    accelerator.load_state(str(checkpoint))
    step = int(CHECKPOINT_PATTERN.match(Path(checkpoint).name).group(1))
    logger.info("resumed from %s at step %d", checkpoint, step)
    return step


def save_pretrained_atomically(obj, folder: str | os.PathLike, **kwargs) -> Path:
    """`obj.save_pretrained` into a temporary sibling folder, then swap it in place of `folder` (`atomic_output`)."""
    folder = Path(folder)
    with atomic_output(folder, folder=True) as temporary:
        obj.save_pretrained(temporary, **kwargs)
    return folder


# ---------------------------------------------------------------------------------------------------------------------
# Trackers and signals
# ---------------------------------------------------------------------------------------------------------------------
def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def resolve_trackers(report_to: str) -> list[str]:
    """Tracker names for `Accelerator(log_with=...)`.

    `tensorboard`, `wandb`, `all`, `none`, or `auto` (wandb if importable, else tensorboard). wandb runs offline
    unless the user set `WANDB_MODE` or logged in (`WANDB_API_KEY` or a wandb entry in ~/.netrc): nothing leaves the
    machine unless asked.
    """
    modules = {"wandb": "wandb", "tensorboard": "torch.utils.tensorboard"}
    if report_to == "none":
        return []
    if report_to not in ("auto", "all", *modules):
        raise ValueError(f"report_to must be one of auto, all, none, wandb, tensorboard; got {report_to!r}")
    wanted = ["wandb", "tensorboard"] if report_to in ("auto", "all") else [report_to]
    if report_to == "auto":
        wanted = [name for name in wanted if _importable(modules[name])][:1]
    for name in wanted:
        if not _importable(modules[name]):
            raise ImportError(f"report_to={report_to} needs {name}: pip install 'tekken-diffusers[train]'")
    if "wandb" in wanted and "WANDB_MODE" not in os.environ:
        netrc = Path.home() / ".netrc"
        logged_in = bool(os.environ.get("WANDB_API_KEY")) or (netrc.is_file() and "api.wandb.ai" in netrc.read_text())
        if not logged_in:
            os.environ["WANDB_MODE"] = "offline"
    return wanted


class StopSignal:
    """Turns SIGTERM / SIGINT into a flag that the training loop checks after each step, so it can write a
    checkpoint and exit cleanly (a second signal exits at once)."""

    def __init__(self, on_second: Callable[[], None] | None = None):
        self.received: int | None = None
        self._on_second = on_second
        self._previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        logger.warning("received %s: writing a checkpoint after this step, then stopping", signal.Signals(signum).name)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
