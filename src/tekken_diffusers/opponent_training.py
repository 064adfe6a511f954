"""Training `TekkenOpponentPolicy` on a latent dataset with both players' inputs (`tekken-train-opponent`).

The whole dataset is read into memory once (a latent frame of the shipped Boxing VAE is 2 KiB in float16, so 200 k
frames take 400 MiB). Each step draws random frames t of random rounds and trains both heads with a cross-entropy:
the policy on player 2's input of frame t from the `context_frames` frames before it, the inverse model on the same
input from frames t−1 and t. The frames are re-noised a little, as the world model's cache holds them (flow-matching
noise at σ drawn in [0, `noise_max`]). Validation reports the negative log-likelihood and accuracy of both heads beside
two baselines under the same frames: the most common input, and repeating player 2's previous input.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .actions import ids_to_bits
from .data.latents import load_latent_info
from .data.latents.schema import latents_tensor, row_arrays
from .models.opponent_policy import TekkenOpponentPolicy
from .utils import atomic_output

logger = logging.getLogger(__name__)

__all__ = [
    "OpponentTrainingConfig",
    "OpponentData",
    "concatenate_opponent_data",
    "load_opponent_data",
    "load_opponent_datasets",
    "train_opponent_policy",
]

METRICS_FILE = "opponent_metrics.json"


@dataclass
class OpponentTrainingConfig:
    """What `train_opponent_policy` does (the `tekken-train-opponent` options)."""

    context_frames: int = 4
    input_frames: int | None = None
    hidden_dim: int = 256
    conv_channels: int = 64
    steps: int = 3000
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    noise_max: float = 0.15
    temperature: float = 1.0
    reads_player_1_input: bool = True
    seed: int = 0
    val_samples: int = 8192


@dataclass
class OpponentData:
    """One split in memory: latents `(N, C, h, w)` float16 of every round end to end, both players' input ids
    `(N, 2)`, and the index where each round starts."""

    latents: torch.Tensor
    actions: torch.Tensor
    starts: np.ndarray

    def __len__(self) -> int:
        return self.latents.shape[0]

    def positions(self) -> np.ndarray:
        """Frames that have a frame before them in their round (every frame but each round's first)."""
        first = np.zeros(len(self), dtype=bool)
        first[self.starts] = True
        return np.flatnonzero(~first)


def concatenate_opponent_data(parts: Sequence[OpponentData]) -> OpponentData:
    """Several splits (e.g. of datasets recorded apart) as one, their rounds end to end."""
    offsets = np.cumsum([0] + [len(part) for part in parts[:-1]])
    return OpponentData(
        torch.cat([part.latents for part in parts]),
        torch.cat([part.actions for part in parts]),
        np.concatenate([part.starts + offset for part, offset in zip(parts, offsets)]),
    )


def load_opponent_datasets(
    paths: str | os.PathLike | Sequence[str | os.PathLike], split: str, progress: bool = True
) -> OpponentData | None:
    """One split of one or more latent datasets with player 2's inputs, pooled (None when none of them has it);
    the datasets must share their latent shape."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    infos = {str(path): load_latent_info(path) for path in paths}
    shapes = {path: tuple(info.latent_shape) for path, info in infos.items()}
    if len(set(shapes.values())) > 1:
        found = ", ".join(f"{path}: {shape}" for path, shape in shapes.items())
        raise ValueError(f"--dataset: the datasets' latents must have one shape (C, h, w); found {found}")
    parts = [load_opponent_data(path, split, progress) for path, info in infos.items() if split in info.splits]
    return concatenate_opponent_data(parts) if parts else None


def load_opponent_data(path: str | os.PathLike, split: str, progress: bool = True) -> OpponentData:
    """Read one split of a latent dataset with player 2's inputs into memory (valid frames only)."""
    import datasets

    info = load_latent_info(path)
    if not info.has_actions_p2:
        raise ValueError(
            f"--dataset {path}: its rows have no player-2 inputs (actions_p2); an opponent policy learns them. For "
            "one-player Boxing, infer them first: tekken-infer-opponent"
        )
    if info.temporal_compression_ratio != 1:
        raise ValueError(f"--dataset {path}: an opponent policy needs one latent frame per game frame (per-frame VAE)")
    loaded = datasets.load_from_disk(str(path))
    if split not in loaded:
        raise ValueError(f"--dataset {path}: no split {split!r}; it has {', '.join(loaded)}")
    arrow = loaded[split].with_format("arrow")
    latents, actions, starts, total = [], [], [], 0
    for index in tqdm(range(len(arrow)), desc=f"reading {split}", leave=False, disable=not progress):
        row = row_arrays(arrow[index])
        if row["actions_p2"] is None:
            raise ValueError(f"--dataset {path}: round {row['round_id']} has no player-2 inputs (actions_p2)")
        valid = row["num_valid"]
        stored = row["latents"].reshape(row["latents_shape"])[:valid]
        latents.append(latents_tensor(stored, row["latents_dtype"]).to(torch.float16))
        actions.append(torch.from_numpy(np.stack([row["actions"][:valid], row["actions_p2"][:valid]], axis=1)))
        starts.append(total)
        total += valid
    return OpponentData(torch.cat(latents), torch.cat(actions).long(), np.asarray(starts, dtype=np.int64))


def _batch(
    data: OpponentData,
    frames: np.ndarray,
    context: int,
    noise_max: float,
    generator: torch.Generator,
    input_frames: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Policy inputs for target frames `frames`: the `context` frames before each (repeating a round's first frame
    where the round starts later, with nothing pressed), the bits of the `input_frames` frames before each, the frame
    and the one before it (for the inverse model), the target ids and player 1's input of the target frame."""
    round_start = data.starts[np.searchsorted(data.starts, frames, side="right") - 1]

    def before(count: int) -> tuple[np.ndarray, np.ndarray]:  # the `count` frames before t, clamped to the round
        index = frames[:, None] + np.arange(-count, 0)[None, :]
        return np.maximum(index, round_start[:, None]), index < round_start[:, None]

    index, _ = before(context)
    history = data.latents[torch.from_numpy(index)].float()  # (B, K, C, h, w)
    current = data.latents[torch.from_numpy(frames)].float()[:, None]  # (B, 1, C, h, w)
    both = torch.cat([history, current], dim=1)
    if noise_max > 0:
        sigma = torch.rand(both.shape[0], 1, 1, 1, 1, generator=generator) * noise_max
        both = (1 - sigma) * both + sigma * torch.randn(both.shape, generator=generator)
    index, before_start = before(input_frames)
    bits = ids_to_bits(data.actions[torch.from_numpy(index)])  # (B, I, 2, 8) float
    bits[torch.from_numpy(before_start)] = 0.0
    targets = data.actions[torch.from_numpy(frames), 1]
    player_1 = ids_to_bits(data.actions[torch.from_numpy(frames), 0])  # player 1's input of the target frame
    return both[:, :-1], bits, both[:, -2:], targets, player_1


@torch.no_grad()
def evaluate_opponent_policy(
    model: TekkenOpponentPolicy, data: OpponentData, samples: int = 8192, seed: int = 0
) -> dict[str, float]:
    """Negative log-likelihood (nats) and accuracy of both heads on `samples` random frames, beside the baselines."""
    rng = np.random.default_rng(seed)
    positions = data.positions()
    frames = np.sort(rng.choice(positions, size=min(samples, len(positions)), replace=False))
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    nll = correct = inv_nll = inv_correct = repeat = 0.0
    for chunk in np.array_split(frames, max(1, math.ceil(len(frames) / 1024))):
        history, bits, pair, targets, player_1 = _batch(
            data, chunk, model.config.context_frames, 0.0, generator, model.num_input_frames
        )
        logits = model(history, bits, player_1)
        nll += float(F.cross_entropy(logits, targets, reduction="sum"))
        correct += float((logits.argmax(-1) == targets).sum())
        inverse = model.infer_logits(pair)[:, 0]
        inv_nll += float(F.cross_entropy(inverse, targets, reduction="sum"))
        inv_correct += float((inverse.argmax(-1) == targets).sum())
        repeat += float((data.actions[torch.from_numpy(chunk - 1), 1] == targets).sum())
    count = len(frames)
    all_targets = data.actions[torch.from_numpy(frames), 1]
    majority = float(torch.bincount(all_targets).max()) / count
    return {
        "frames": count,
        "policy_nll": nll / count,
        "policy_accuracy": correct / count,
        "inverse_nll": inv_nll / count,
        "inverse_accuracy": inv_correct / count,
        "baseline_repeat_previous_accuracy": repeat / count,
        "baseline_most_common_accuracy": majority,
    }


def train_opponent_policy(
    dataset: str | os.PathLike | Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    config: OpponentTrainingConfig | None = None,
    progress: bool = True,
) -> tuple[TekkenOpponentPolicy, dict[str, Any]]:
    """Train an opponent policy on `dataset` (its train split, or the train splits of several datasets pooled;
    metrics on the `val` splits when there are any) and save it to
    `output_dir` (`save_pretrained` layout plus `opponent_metrics.json`), written under a temporary name first. The
    learning rate warms up linearly over the first 5 % of the steps, then follows a cosine to zero.

    Returns:
        The trained model and its metrics.
    """
    config = config or OpponentTrainingConfig()
    output_dir = Path(output_dir)
    torch.manual_seed(config.seed)
    datasets = [dataset] if isinstance(dataset, (str, os.PathLike)) else list(dataset)
    if not datasets:
        raise ValueError("--dataset: give at least one latent dataset")
    train = load_opponent_datasets(datasets, "train", progress)
    if train is None:
        raise ValueError(f"--dataset {' '.join(map(str, datasets))}: no train split")
    channels, height, width = load_latent_info(datasets[0]).latent_shape
    model = TekkenOpponentPolicy(
        in_channels=channels,
        sample_size=(height, width),
        context_frames=config.context_frames,
        input_frames=config.input_frames,
        hidden_dim=config.hidden_dim,
        conv_channels=config.conv_channels,
        temperature=config.temperature,
        reads_player_1_input=config.reads_player_1_input,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    warmup = max(1, config.steps // 20)

    def rate(step: int) -> float:  # linear warm-up over 5 % of the steps, then cosine to zero
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, config.steps - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    positions = train.positions()
    start = time.perf_counter()
    model.train()
    bar = tqdm(range(config.steps), desc="opponent policy", disable=not progress)
    for step in bar:
        frames = rng.choice(positions, size=config.batch_size)
        history, bits, pair, targets, player_1 = _batch(
            train, frames, config.context_frames, config.noise_max, generator, model.num_input_frames
        )
        policy_loss = F.cross_entropy(model(history, bits, player_1), targets)
        inverse_loss = F.cross_entropy(model.infer_logits(pair)[:, 0], targets)
        loss = policy_loss + inverse_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0:
            bar.set_postfix(policy=f"{policy_loss.item():.3f}", inverse=f"{inverse_loss.item():.3f}")
    minutes = (time.perf_counter() - start) / 60
    names = str(datasets[0]) if len(datasets) == 1 else [str(path) for path in datasets]
    metrics: dict[str, Any] = {"config": asdict(config), "dataset": names, "train_minutes": round(minutes, 2)}
    metrics["train"] = evaluate_opponent_policy(model, train, config.val_samples, config.seed)
    val = load_opponent_datasets(datasets, "val", progress)
    if val is not None:
        metrics["val"] = evaluate_opponent_policy(model, val, config.val_samples)
    model.eval()
    with atomic_output(output_dir, folder=True) as tmp:
        model.save_pretrained(tmp)
        (Path(tmp) / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    logger.info("wrote %s: %s", output_dir, json.dumps({k: metrics[k] for k in ("train", "val") if k in metrics}))
    return model, metrics
