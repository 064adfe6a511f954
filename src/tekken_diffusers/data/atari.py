"""Atari Boxing as the stand-in fighting game: an emulator wrapper, human-like policies and the round recorder.

Boxing (Activision, 1981) ships inside `ale-py`, so real 1v1 fighting-game data can be recorded offline. Defaults
follow DIAMOND, the reference Atari world model: 64×64 RGB frames and a frame skip of 4 (15 Hz at Atari's 60 Hz).

Conventions of the recorded rounds (see docs/data_format.md):
- `actions_p1[t]` is the input held while the game advanced from frame t−1 to frame t, so frame t is the first frame
  that can show its effect. A round cut from the start of an episode has `actions_p1[0] = 0` (nothing was pressed
  before the reset frame); later rounds of the same episode carry the real input that produced their first frame.
- `states[t]` is read from the console RAM at frame t; its columns are `BOXING_STATE_NAMES`.
- player 1 is the white boxer, who starts on the left; in two-player recordings player 2 is the black boxer.
"""

from __future__ import annotations

import abc
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..actions import ATARI_ACTION_NAMES, DOWN, LEFT, LP, RIGHT, UP, atari_to_id, id_to_atari
from ..utils import atomic_output
from .rounds import Round, load_round, save_round

logger = logging.getLogger(__name__)

__all__ = [
    "BOXING_STATE_NAMES",
    "BoxingEnv",
    "RecordConfig",
    "POLICIES",
    "make_policy",
    "record_boxing",
    "boxing_rom_path",
]

# RAM addresses, found by holding each direction in the emulator and watching which bytes move (ale-py 0.12.1):
# 32/34 are the white boxer's x/y, 33/35 the black boxer's; 18/19 are their scores and 16/17 the clock, in BCD.
_RAM_P1_X, _RAM_P2_X, _RAM_P1_Y, _RAM_P2_Y = 32, 33, 34, 35
_RAM_P1_SCORE, _RAM_P2_SCORE, _RAM_MINUTES, _RAM_SECONDS = 18, 19, 16, 17
BOXING_STATE_NAMES: tuple[str, ...] = ("p1_x", "p1_y", "p2_x", "p2_y", "p1_score", "p2_score", "clock_seconds")
ATARI_FPS = 60.0


def _bcd(value: int) -> int:
    return (value >> 4) * 10 + (value & 0x0F)


def boxing_rom_path() -> Path:
    """The Boxing ROM bundled with ale-py."""
    try:
        from ale_py import roms
    except ImportError as error:  # pragma: no cover - exercised only without the [atari] extra
        raise ImportError("Recording Atari Boxing needs ale-py: pip install 'tekken-diffusers[atari]'") from error
    return Path(roms.get_rom_path("boxing"))


def boxing_state(ram: np.ndarray) -> np.ndarray:
    """Console RAM → float32 `(7,)` state vector with columns `BOXING_STATE_NAMES`."""
    minutes = int(ram[_RAM_MINUTES]) >> 4
    return np.array(
        [
            ram[_RAM_P1_X],
            ram[_RAM_P1_Y],
            ram[_RAM_P2_X],
            ram[_RAM_P2_Y],
            _bcd(int(ram[_RAM_P1_SCORE])),
            _bcd(int(ram[_RAM_P2_SCORE])),
            minutes * 60 + _bcd(int(ram[_RAM_SECONDS])),
        ],
        dtype=np.float32,
    )


class BoxingEnv:
    """Atari Boxing with frame skip, for one player (ale-py, the console's AI boxes player 2) or two (pettingzoo).

    Each `step` holds the given inputs for `frame_skip` console frames and returns the screen as the pixel-wise max
    of the last two console frames (the standard remedy for Atari sprite flicker), resized to `size`.

    Args:
        size: output frame size `(height, width)`.
        frame_skip: console frames per step (4 gives 15 Hz).
        two_player: let a second policy box player 2 instead of the console's AI.
    """

    def __init__(self, size: tuple[int, int] = (64, 64), frame_skip: int = 4, two_player: bool = False):
        if frame_skip < 1:
            raise ValueError(f"frame_skip must be >= 1, got {frame_skip}")
        if len(size) != 2 or min(size) < 8:
            raise ValueError(f"size must be (height, width) with both >= 8, got {size}")
        self.size = (int(size[0]), int(size[1]))
        self.frame_skip = frame_skip
        self.two_player = two_player
        self._rom = boxing_rom_path()
        if two_player:
            self._make_two_player()
        else:
            from ale_py import ALEInterface, LoggerMode

            ALEInterface.setLoggerMode(LoggerMode.Error)
            self._ale = ALEInterface()
            self._ale.setFloat("repeat_action_probability", 0.0)  # no sticky actions: a seed fixes the episode
            self._ale.setInt("frame_skip", 1)

    def _make_two_player(self) -> None:
        try:
            from pettingzoo.atari import boxing_v2
        except ImportError as error:
            raise ImportError(
                "Two-player Boxing needs pettingzoo, multi-agent-ale-py and pygame: "
                "pip install 'tekken-diffusers[atari]'"
            ) from error
        # pettingzoo looks for `<auto_rom_install_path>/boxing.bin`: ale-py's bundled ROM folder has exactly that,
        # so no ROM download (AutoROM) is needed.
        self._env = boxing_v2.parallel_env(
            obs_type="rgb_image", full_action_space=True, auto_rom_install_path=str(self._rom.parent), max_cycles=10**9
        )
        self._ale = self._env.unwrapped.ale

    @property
    def fps(self) -> float:
        return ATARI_FPS / self.frame_skip

    def reset(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Start a new bout. Returns the first frame `(3, H, W)` uint8 and its state vector."""
        if self.two_player:
            self._env.reset(seed=seed)
        else:
            self._ale.setInt("random_seed", seed % (2**31))
            self._ale.loadROM(str(self._rom))
            self._ale.reset_game()
        screen = self._ale.getScreenRGB()
        return self._resize(screen), boxing_state(self._ale.getRAM())

    def step(self, atari_p1: int, atari_p2: int = 0) -> tuple[np.ndarray, np.ndarray, bool]:
        """Hold ALE actions (0..17) for `frame_skip` console frames. Returns (frame, state, episode_over)."""
        previous = current = None
        done = False
        for _ in range(self.frame_skip):
            if self.two_player:
                self._env.step({"first_0": int(atari_p1), "second_0": int(atari_p2)})
                done = not self._env.agents
            else:
                self._ale.act(int(atari_p1))
                done = self._ale.game_over()
            previous, current = current, self._ale.getScreenRGB()
            if done:
                break
        screen = current if previous is None else np.maximum(previous, current)
        return self._resize(screen), boxing_state(self._ale.getRAM()), done

    def _resize(self, screen: np.ndarray) -> np.ndarray:
        height, width = self.size
        image = Image.fromarray(screen).resize((width, height), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()  # (H, W, 3) -> (3, H, W)


# ---------------------------------------------------------------------------------------------------------------------
# Policies: map the game state to an action id, holding inputs for several steps like a person does.
# ---------------------------------------------------------------------------------------------------------------------
Policy = Callable[[np.ndarray], int]


class _HeldPolicy(abc.ABC):
    """Base: decide an input, then hold it for a random number of steps (people do not change input every 67 ms)."""

    def __init__(self, rng: np.random.Generator, player: int, min_hold: int = 2, max_hold: int = 8):
        self.rng = rng
        self.player = player
        self.min_hold, self.max_hold = min_hold, max_hold
        self._action = 0
        self._left = 0

    def __call__(self, state: np.ndarray) -> int:
        if self._left <= 0:
            self._action = self.decide(state)
            self._left = int(self.rng.integers(self.min_hold, self.max_hold + 1))
        self._left -= 1
        return self._action

    @abc.abstractmethod
    def decide(self, state: np.ndarray) -> int:
        """Choose the next input (an action id) from the game state."""


class RandomHoldPolicy(_HeldPolicy):
    """Uniform over the 18 Atari inputs, each held for 2–8 steps."""

    def decide(self, state: np.ndarray) -> int:
        return int(atari_to_id(int(self.rng.integers(len(ATARI_ACTION_NAMES)))))


class ApproachPunchPolicy(_HeldPolicy):
    """Walk to the opponent's height and punching distance, then punch; sometimes back off; a little randomness.

    Uses the boxers' positions from the state vector, as a person uses their eyes. Reach, reaction time and
    aggression are drawn per policy, so different recordings look like different players.
    """

    def __init__(self, rng: np.random.Generator, player: int):
        super().__init__(rng, player, min_hold=1, max_hold=int(rng.integers(3, 7)))
        self.reach = float(rng.uniform(22.0, 32.0))
        self.aggression = float(rng.uniform(0.5, 0.9))
        self.epsilon = float(rng.uniform(0.05, 0.2))

    def decide(self, state: np.ndarray) -> int:
        if self.rng.random() < self.epsilon:
            return int(atari_to_id(int(self.rng.integers(len(ATARI_ACTION_NAMES)))))
        me, them = (state[0:2], state[2:4]) if self.player == 1 else (state[2:4], state[0:2])
        dx, dy = float(them[0] - me[0]), float(them[1] - me[1])
        action = 0
        if abs(dy) > 4.0:
            action |= DOWN if dy > 0 else UP  # RAM y grows downwards
        if abs(dx) > self.reach:
            action |= RIGHT if dx > 0 else LEFT
        elif abs(dx) < self.reach * 0.6 and self.rng.random() < 0.5:
            action |= LEFT if dx > 0 else RIGHT  # too close to land a punch: step back
        if abs(dy) < 12.0 and abs(dx) < self.reach + 8.0 and self.rng.random() < self.aggression:
            action |= LP
        elif self.rng.random() < 0.1:
            action = (LEFT if dx > 0 else RIGHT) | (UP if self.rng.random() < 0.5 else DOWN)  # dodge
        return action


class MixedPolicy:
    """Switches between approach-and-punch (70 %) and random held inputs (30 %) every 10–40 steps."""

    def __init__(self, rng: np.random.Generator, player: int):
        self.rng = rng
        self._policies = (ApproachPunchPolicy(rng, player), RandomHoldPolicy(rng, player))
        self._current = self._policies[0]
        self._left = 0

    def __call__(self, state: np.ndarray) -> int:
        if self._left <= 0:
            self._current = self._policies[0] if self.rng.random() < 0.7 else self._policies[1]
            self._left = int(self.rng.integers(10, 41))
        self._left -= 1
        return self._current(state)


POLICIES: dict[str, Callable[[np.random.Generator, int], Policy]] = {
    "mix": MixedPolicy,
    "approach": ApproachPunchPolicy,
    "random": RandomHoldPolicy,
}


def make_policy(name: str, rng: np.random.Generator, player: int = 1) -> Policy:
    """Build a policy by name (`mix`, `approach`, `random`). Raises naming the known ones."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; known policies: {', '.join(POLICIES)}")
    return POLICIES[name](rng, player)


# ---------------------------------------------------------------------------------------------------------------------
# Recording
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class RecordConfig:
    """What `record_boxing` records.

    Args:
        out: output folder; rounds go to `out/train/round_NNNN.npz` and `out/val/round_NNNN.npz`.
        rounds: total number of rounds (train + val).
        max_frames: longest round; episodes are cut into rounds of at most this many frames.
        seed: fixes everything: the same seed gives byte-identical files.
        size: frame size `(height, width)`.
        frame_skip: console frames per recorded frame.
        policy: `mix`, `approach` or `random`.
        val_fraction: share of rounds for validation. Validation rounds come from their own episodes, never from an
            episode that also feeds training. At least one validation round whenever `val_fraction > 0`.
        two_player: record both players' inputs (player 2 played by a second policy instead of the console AI).
        min_frames: the tail of an episode shorter than this is not kept as a round (at most `max_frames`).

    The settings that decide what a round holds (`CONTENT_SETTINGS`) are written to `out/recording.json`; recording
    into a folder made with other ones is refused, so a folder never mixes two recordings.
    """

    out: Path
    rounds: int = 20
    max_frames: int = 1000
    seed: int = 0
    size: tuple[int, int] = (64, 64)
    frame_skip: int = 4
    policy: str = "mix"
    val_fraction: float = 0.1
    two_player: bool = False
    min_frames: int = 16

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if self.max_frames < 2:
            raise ValueError(f"max_frames must be >= 2, got {self.max_frames}")
        if self.min_frames < 1:
            raise ValueError(f"min_frames must be >= 1, got {self.min_frames}")
        if len(self.size) != 2 or min(self.size) < 8:
            raise ValueError(f"size must be (height, width) with both >= 8, got {tuple(self.size)}")
        self.size = (int(self.size[0]), int(self.size[1]))
        if self.frame_skip < 1:
            raise ValueError(f"frame_skip must be >= 1, got {self.frame_skip}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction}")
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}; known policies: {', '.join(POLICIES)}")
        self.min_frames = min(self.min_frames, self.max_frames)

    def content_settings(self) -> dict[str, object]:
        """The settings that decide what each round holds (the number of rounds and the split only decide which)."""
        return {
            "seed": self.seed,
            "size": list(self.size),
            "frame_skip": self.frame_skip,
            "policy": self.policy,
            "two_player": self.two_player,
            "max_frames": self.max_frames,
            "min_frames": self.min_frames,
        }

    def split_sizes(self) -> dict[str, int]:
        num_val = 0 if self.val_fraction == 0 or self.rounds < 2 else max(1, round(self.rounds * self.val_fraction))
        return {"train": self.rounds - num_val, "val": num_val}


_SPLIT_IDS = {"train": 0, "val": 1}


def _episode_rounds(env: BoxingEnv, config: RecordConfig, split: str, episode: int) -> Iterator[Round]:
    """Play one seeded episode and yield it cut into rounds of at most `max_frames` frames."""
    seed_seq = np.random.SeedSequence([config.seed, _SPLIT_IDS[split], episode])
    emulator_seed, p1_seed, p2_seed = (int(s.generate_state(1)[0]) for s in seed_seq.spawn(3))
    policy_p1 = make_policy(config.policy, np.random.default_rng(p1_seed), player=1)
    policy_p2 = make_policy(config.policy, np.random.default_rng(p2_seed), player=2) if config.two_player else None

    frame, state = env.reset(emulator_seed)
    frames, states, actions_p1, actions_p2 = [frame], [state], [0], [0]
    done = False
    while not done:
        action_p1 = policy_p1(state)
        action_p2 = policy_p2(state) if policy_p2 is not None else 0
        frame, state, done = env.step(int(id_to_atari(action_p1)), int(id_to_atari(action_p2)))
        frames.append(frame)
        states.append(state)
        actions_p1.append(action_p1)
        actions_p2.append(action_p2)
        if len(frames) == config.max_frames or done:
            if len(frames) >= config.min_frames:
                yield Round(
                    images=np.stack(frames),
                    actions_p1=np.array(actions_p1, dtype=np.uint8),
                    valid_frames=np.ones(len(frames), dtype=bool),
                    actions_p2=np.array(actions_p2, dtype=np.uint8) if config.two_player else None,
                    states=np.stack(states),
                    fps=env.fps,
                    game="boxing-2p" if config.two_player else "boxing",
                    extras={"state_names": np.array(BOXING_STATE_NAMES)},
                )
            frames, states, actions_p1, actions_p2 = [], [], [], []


def _round_path(config: RecordConfig, split: str, index: int) -> Path:
    return config.out / split / f"round_{index:04d}.npz"


RECORDING_FILE = "recording.json"


def _check_folder(config: RecordConfig) -> bool:
    """Refuse an `out` that is a file, or that holds a recording made with other settings. Returns whether
    `recording.json` is already there."""
    for parent in (config.out, *config.out.parents):
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"out {config.out}: {parent} is a file (expected a folder, or nothing)")
    path = config.out / RECORDING_FILE
    wanted = config.content_settings()
    if path.is_file():
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise ValueError(
                f"{path}: not valid JSON ({error}); delete it only if every round there is ours"
            ) from None
        differing = [key for key in wanted if found.get(key) != wanted[key]]
        if differing:
            details = ", ".join(f"{key} {found.get(key)!r} there, {wanted[key]!r} asked" for key in differing)
            raise ValueError(
                f"out {config.out} holds rounds recorded with other settings ({details}): record into another "
                "folder, or re-run with the settings it was made with"
            )
        return True
    return False


def _is_finished(path: Path, config: RecordConfig, fps: float) -> bool:
    """Whether `path` holds a valid round of this recording. A valid round made with other settings (a folder from
    before `recording.json`) is an error, not something to overwrite or mix in."""
    if not path.exists():
        return False
    try:
        round_ = load_round(path)
    except ValueError:
        logger.warning("%s is damaged and will be recorded again", path)
        return False
    found = {"size": round_.frame_size, "fps": round_.fps, "two_player": round_.actions_p2 is not None}
    # fps is stored as float32: compare it as such (frame_skip 7 gives 8.571428…, not exact in float32)
    wanted = {"size": config.size, "fps": float(np.float32(fps)), "two_player": config.two_player}
    differing = [key for key in wanted if found[key] != wanted[key]]
    if differing:
        details = ", ".join(f"{key} {found[key]!r} there, {wanted[key]!r} asked" for key in differing)
        raise ValueError(f"{path} was recorded with other settings ({details}): record into another folder")
    return True


def record_boxing(config: RecordConfig, progress: bool = True) -> dict[str, list[Path]]:
    """Record Boxing rounds as described by `config`. Rounds already on disk (and valid) are kept, not re-written.

    Episodes are seeded from `(seed, split, episode index)`, and the policies only read the game state, so a resumed
    run replays the emulator (cheap) and writes exactly the files an uninterrupted run would have written.

    Returns:
        The paths of the rounds of each split.
    """
    from tqdm.auto import tqdm

    env = BoxingEnv(config.size, config.frame_skip, config.two_player)
    sizes = config.split_sizes()
    noted = _check_folder(config)
    finished = {
        split: [_is_finished(_round_path(config, split, index), config, env.fps) for index in range(count)]
        for split, count in sizes.items()
    }
    if not noted:
        with atomic_output(config.out / RECORDING_FILE) as tmp:
            tmp.write_text(json.dumps(config.content_settings(), indent=2) + "\n", encoding="utf-8")
    written: dict[str, list[Path]] = {}
    with tqdm(total=config.rounds, desc="recording Boxing rounds", unit="round", disable=not progress) as bar:
        for split, count in sizes.items():
            paths = [_round_path(config, split, index) for index in range(count)]
            written[split] = paths
            if count == 0:
                continue
            index, episode = 0, 0
            bar.update(sum(finished[split]))
            while index < count and not all(finished[split][index:]):
                for round_ in _episode_rounds(env, config, split, episode):
                    if not finished[split][index]:
                        save_round(paths[index], round_)
                        bar.update(1)
                    index += 1
                    if index == count:
                        break
                episode += 1
    return written
