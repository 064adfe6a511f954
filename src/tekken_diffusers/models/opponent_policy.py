"""An opponent policy for a two-player world model: who presses what on player 2's side when no person does.

A world model asked to predict an opponent it cannot read averages the opponent's possible moves, and in a long
rollout the averaged boxer fades. Splitting the prediction in two keeps the frames sharp: a two-player world model
renders the move it is given, and this small network picks the move, by sampling a discrete input from what it
learned of the opponent (the console's AI in one-player Boxing).

`TekkenOpponentPolicy` reads the world model's own latents (normalised, as the transformer sees them) and has two
heads:
- the **policy** (`forward`): the next input of player 2, from the last `context_frames` latent frames and both
  players' inputs of the last `input_frames` frames (at least as many) — logits over the `2 ** num_actions` input
  combinations;
- the **inverse model** (`infer_inputs`): the input that took frame t−1 to frame t, from the two frames — used to label
  the context frames of a clip whose player-2 inputs were never recorded, so that the world model's cache reads them
  under the same kind of inputs it was trained with.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..actions import NUM_BUTTONS, bits_to_ids, ids_to_bits

__all__ = ["TekkenOpponentPolicy"]


class TekkenOpponentPolicy(ModelMixin, ConfigMixin):
    r"""
    Player 2's next input from the last frames of a two-player world model (see the module docstring).

    Args:
        in_channels (`int`, defaults to 16): Latent channels (the world model's `in_channels`).
        sample_size (`(int, int)`, defaults to `(8, 8)`): Latent height and width.
        num_actions (`int`, defaults to 8): Bits per player's input; the heads score all `2 ** num_actions` inputs.
        context_frames (`int`, defaults to 4): Past latent frames the policy reads.
        input_frames (`int`, *optional*): Past frames whose inputs (both players') the policy reads; at least
            `context_frames`, which it defaults to. A longer history of inputs costs little (16 numbers a frame against
            a convolutional encoder per latent frame) and shows the opponent's rhythm: who pressed what over the last
            second or two.
        hidden_dim (`int`, defaults to 256): Width of the frame features and the heads.
        conv_channels (`int`, defaults to 64): Channels of the per-frame convolutional encoder.
        temperature (`float`, defaults to 1.0): Sampling temperature a pipeline draws player 2's inputs with (0: the
            most likely input every time). Saved with the model; change it with `register_to_config(temperature=…)`.
        reads_player_1_input (`bool`, defaults to `False`): The policy also reads player 1's input of the frame to
            generate. Where player 2's inputs are inferred from what the frames show (the console's boxer), a push
            by player 1 shows up as a move of player 2's, so the input that moves player 1 in the same frame tells
            the policy something; it is known whenever player 2's input is drawn.
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        in_channels: int = 16,
        sample_size: tuple[int, int] | list[int] = (8, 8),
        num_actions: int = NUM_BUTTONS,
        context_frames: int = 4,
        hidden_dim: int = 256,
        conv_channels: int = 64,
        temperature: float = 1.0,
        reads_player_1_input: bool = False,
        input_frames: int | None = None,
    ):
        super().__init__()
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if num_actions != NUM_BUTTONS:
            raise ValueError(f"num_actions: inputs are {NUM_BUTTONS}-bit vectors, got {num_actions}")
        if context_frames < 1:
            raise ValueError(f"context_frames must be >= 1, got {context_frames}")
        if input_frames is not None and input_frames < context_frames:
            raise ValueError(f"input_frames must be >= context_frames ({context_frames}), got {input_frames}")
        self.num_input_frames = context_frames if input_frames is None else int(input_frames)
        height, width = (int(s) for s in sample_size)
        flat = conv_channels * math.ceil(height / 2) * math.ceil(width / 2)
        self.frame_encoder = nn.Sequential(
            nn.Conv2d(in_channels, conv_channels, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(conv_channels, conv_channels, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(flat, hidden_dim),
            nn.SiLU(),
        )
        num_classes = 2**num_actions
        # Per latent frame its features and both inputs; then the inputs of the older frames (`input_frames` beyond
        # `context_frames`); then player 1's input of the frame to generate.
        policy_inputs = (
            context_frames * hidden_dim
            + self.num_input_frames * 2 * num_actions
            + (num_actions if reads_player_1_input else 0)
        )
        self.policy_head = nn.Sequential(
            nn.Linear(policy_inputs, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, num_classes),
        )
        self.inverse_head = nn.Sequential(
            nn.Linear(2 * hidden_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, num_classes)
        )

    @property
    def _weight_dtype(self) -> torch.dtype:
        """The weights' dtype, read from one parameter (diffusers' `self.dtype` walks every submodule; this policy
        has no fp32-kept modules nor casting hooks, and runs once a frame)."""
        return next(self.parameters()).dtype

    def _encode(self, latents: torch.Tensor) -> torch.Tensor:
        """`(B, T, C, h, w)` → per-frame features `(B, T, hidden_dim)`."""
        batch, frames = latents.shape[:2]
        features = self.frame_encoder(latents.flatten(0, 1).to(self._weight_dtype))
        return features.view(batch, frames, -1)

    def _pad(self, latents: torch.Tensor, bits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep the last `context_frames` latent frames and the last `input_frames` inputs; a shorter history repeats
        its first frame, with nothing pressed."""
        need = self.config.context_frames
        latents = latents[:, -need:]
        missing = need - latents.shape[1]
        if missing > 0:
            latents = torch.cat([latents[:, :1].expand(-1, missing, *latents.shape[2:]), latents], dim=1)
        need = self.num_input_frames
        bits = bits[:, -need:]
        missing = need - bits.shape[1]
        if missing > 0:
            bits = torch.cat([bits.new_zeros(bits.shape[0], missing, *bits.shape[2:]), bits], dim=1)
        return latents, bits

    def forward(
        self, latents: torch.Tensor, actions: torch.Tensor, player_1_input: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits `(B, 2 ** num_actions)` of player 2's next input.

        Args:
            latents: the last frames `(B, T, C, h, w)` (T ≥ 1; the last `context_frames` are read).
            actions: both players' inputs as bits `(B, T', 2, num_actions)`, the last row that of the last latent
                frame (T' may differ from T; the last `input_frames` are read).
            player_1_input: player 1's input of the frame to generate, bits `(B, num_actions)`; required by a policy
                that reads it (`reads_player_1_input`), ignored by one that does not.
        """
        if (
            latents.ndim != 5
            or actions.ndim != 4
            or actions.shape[0] != latents.shape[0]
            or min(latents.shape[1], actions.shape[1]) < 1
            or actions.shape[2:] != (2, NUM_BUTTONS)
        ):
            raise ValueError(
                f"expected latents (B, T, C, h, w) and actions (B, T', 2, {NUM_BUTTONS}), got {tuple(latents.shape)} "
                f"and {tuple(actions.shape)}"
            )
        latents, actions = self._pad(latents, actions)
        bits = actions.flatten(2).to(self._weight_dtype)  # (B, input_frames, 2 * num_actions)
        older = self.num_input_frames - self.config.context_frames
        recent = torch.cat([self._encode(latents), bits[:, older:]], dim=-1).flatten(1)
        features = torch.cat([recent, bits[:, :older].flatten(1)], dim=-1) if older else recent
        if self.config.reads_player_1_input:
            if player_1_input is None or tuple(player_1_input.shape) != (latents.shape[0], NUM_BUTTONS):
                found = None if player_1_input is None else tuple(player_1_input.shape)
                raise ValueError(
                    f"player_1_input: this policy reads player 1's input of the frame to generate, bits "
                    f"({latents.shape[0]}, {NUM_BUTTONS}); got {found}"
                )
            features = torch.cat([features, player_1_input.to(features.device, self._weight_dtype)], dim=-1)
        return self.policy_head(features).float()

    def infer_logits(self, latents: torch.Tensor) -> torch.Tensor:
        """Logits `(B, T - 1, 2 ** num_actions)` of the input that took frame t−1 to frame t, for t = 1 … T−1."""
        if latents.ndim != 5 or latents.shape[1] < 2:
            raise ValueError(f"expected latents (B, T, C, h, w) with T >= 2, got {tuple(latents.shape)}")
        features = self._encode(latents)
        pairs = torch.cat([features[:, :-1], features[:, 1:]], dim=-1)
        return self.inverse_head(pairs).float()

    @torch.no_grad()
    def infer_inputs(self, latents: torch.Tensor) -> torch.Tensor:
        """Player 2's most likely inputs `(B, T, num_actions)` behind frames `(B, T, C, h, w)` as bits (float32);
        frame 0, whose previous frame is not there, gets nothing pressed."""
        batch, frames = latents.shape[:2]
        bits = torch.zeros(batch, frames, NUM_BUTTONS, device=latents.device)
        if frames > 1:
            bits[:, 1:] = ids_to_bits(self.infer_logits(latents).argmax(-1))
        return bits

    @torch.no_grad()
    def sample(
        self,
        latents: torch.Tensor,
        actions: torch.Tensor,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        player_1_input: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Draw player 2's next input as bits `(B, num_actions)` (float32); `temperature` 0 takes the most likely;
        `player_1_input` as in `forward`."""
        logits = self(latents, actions, player_1_input)
        if temperature <= 0:
            choice = logits.argmax(-1)
        else:
            probs = F.softmax(logits / temperature, dim=-1)
            choice = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)
        return ids_to_bits(choice)

    @staticmethod
    def targets(bits: torch.Tensor) -> torch.Tensor:
        """Bits `(..., num_actions)` → class indices `(...)` (the action id) for the cross-entropy."""
        return bits_to_ids(bits).long()
