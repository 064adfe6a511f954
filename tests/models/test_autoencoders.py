"""The VAEs: the DC-AE, the LTX-Video / Wan wrappers, frame bookkeeping, action pooling and latent normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderDC, ModelMixin
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution, IdentityDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput

from tekken_diffusers.actions import DOWN, LEFT, LP, RIGHT, RK, UP, bits_to_ids, ids_to_bits, pool_action_bits
from tekken_diffusers.data.frames import frames_to_pixels, pixels_to_frames
from tekken_diffusers.data.pose import load_pose_channel, load_pose_images, pose_path_for_round, pose_to_channel
from tekken_diffusers.models.autoencoders import (
    LatentStatistics,
    LTXVideoVAE,
    TekkenAutoencoderDC,
    WanVAE,
    autoencoder_dc_tekken,
    autoencoder_video,
    denormalize_latents,
    latent_frame_groups,
    latent_statistics,
    normalize_latents,
    num_frames_for_latents,
    num_latent_frames,
    pool_actions,
)
from tests.conftest import tiny_dcae, tiny_ltx


def tiny_autoencoder_dc() -> AutoencoderDC:
    """diffusers' own AutoencoderDC test config, attention blocks included."""
    torch.manual_seed(1)
    return AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=2,
        encoder_block_types=("ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        encoder_qkv_multiscales=((), (5,)),
        decoder_qkv_multiscales=((), (5,)),
        encoder_layers_per_block=(1, 1),
        decoder_layers_per_block=(1, 1),
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        scaling_factor=0.41407,
    ).eval()


def tiny_wan() -> WanVAE:
    """Temporal compression 4, spatial 8, z_dim 16."""
    torch.manual_seed(3)
    return WanVAE(base_dim=3, z_dim=16, dim_mult=[1] * 4, num_res_blocks=1, temperal_downsample=[False, True, True])


def pixels(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# --- TekkenAutoencoderDC -------------------------------------------------------------------------------------------


def test_dcae_modules_expose_model_mixin_by_name():
    # the diffusers loader finds external components by probing the module namespace for ModelMixin
    assert autoencoder_dc_tekken.ModelMixin is ModelMixin and autoencoder_video.ModelMixin is ModelMixin
    assert issubclass(TekkenAutoencoderDC, ModelMixin)


def test_dcae_has_the_autoencoder_kl_interface():
    vae = tiny_dcae()
    frames = pixels(2, 3, 16, 16)
    with torch.no_grad():
        encoded = vae.encode(frames)
        assert isinstance(encoded, AutoencoderKLOutput)
        assert isinstance(encoded.latent_dist, IdentityDistribution)
        latents = encoded.latent_dist.mode()
        assert latents.shape == (2, 4, 8, 8)
        # deterministic: sampling gives the mode whatever the generator
        assert torch.equal(encoded.latent_dist.sample(torch.Generator().manual_seed(5)), latents)
        decoded = vae.decode(latents)
        assert isinstance(decoded, DecoderOutput) and decoded.sample.shape == (2, 3, 16, 16)
        assert torch.equal(vae.encode(frames, return_dict=False)[0].mode(), latents)
        assert torch.equal(vae.decode(latents, return_dict=False)[0], decoded.sample)
        assert torch.equal(vae(frames).sample, decoded.sample)
        # the latents are the plain AutoencoderDC encoder's output
        assert torch.equal(latents, vae.encoder(frames))
    assert vae.spatial_compression_ratio == 2 and vae.temporal_compression_ratio == 1


def test_dcae_encodes_clips_frame_by_frame():
    vae = tiny_dcae()
    clip = pixels(2, 3, 5, 16, 16)  # [B, C, T, H, W]
    with torch.no_grad():
        latents = vae.encode(clip).latent_dist.mode()
        assert latents.shape == (2, 4, 5, 8, 8)
        decoded = vae.decode(latents).sample
        assert decoded.shape == (2, 3, 5, 16, 16)
        for t in range(5):
            frame_latents = vae.encode(clip[:, :, t]).latent_dist.mode()
            torch.testing.assert_close(latents[:, :, t], frame_latents, atol=1e-6, rtol=0)
            torch.testing.assert_close(decoded[:, :, t], vae.decode(frame_latents).sample, atol=1e-6, rtol=0)
    assert vae.num_latent_frames(5) == 5 and vae.num_frames_for_latents(5) == 5


def test_dcae_save_load_gives_identical_outputs(tmp_path):
    vae = tiny_dcae(latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[1.0, 2.0, 0.5, 1.5], shift_factor=0.25)
    vae.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "diffusion_pytorch_model.safetensors"}
    loaded = TekkenAutoencoderDC.from_pretrained(tmp_path)
    assert loaded.config.latents_mean == [0.1, -0.2, 0.3, 0.0] and loaded.config.shift_factor == 0.25
    frames = pixels(2, 3, 16, 16, seed=1)
    with torch.no_grad():
        latents = vae.encode(frames).latent_dist.mode()
        assert torch.equal(loaded.encode(frames).latent_dist.mode(), latents)
        assert torch.equal(loaded.decode(latents).sample, vae.decode(latents).sample)


@pytest.mark.parametrize("how", ["model", "folder", "from_pretrained"])
def test_autoencoder_dc_checkpoint_loads_and_matches(tmp_path, how):
    source = tiny_autoencoder_dc()
    source.save_pretrained(tmp_path)
    if how == "model":
        vae = TekkenAutoencoderDC.from_autoencoder_dc(source)
    elif how == "folder":
        vae = TekkenAutoencoderDC.from_autoencoder_dc(tmp_path)
    else:
        vae = TekkenAutoencoderDC.from_pretrained(tmp_path)
    assert isinstance(vae, TekkenAutoencoderDC) and vae.config.scaling_factor == pytest.approx(0.41407)
    frames = pixels(2, 3, 16, 16, seed=2)
    with torch.no_grad():
        expected_latents = source.encode(frames).latent
        latents = vae.encode(frames).latent_dist.mode()
        assert torch.equal(latents, expected_latents)
        # Decoder convolutions may run in oneDNN here (`cpu_convolution`): equal to float rounding.
        torch.testing.assert_close(vae.decode(latents).sample, source.decode(expected_latents).sample)
    # the AutoencoderDC convention applies: no per-channel statistics, (z - 0) * scaling_factor
    torch.testing.assert_close(normalize_latents(latents, vae), latents * 0.41407)


def test_dcae_decodes_single_frames_through_onednn_only_where_it_applies(monkeypatch):
    """Batch-1 fp32 decodes send every decoder convolution to oneDNN (PyTorch would run the small ones on its slower
    im2col path) with the same result; training (gradients) and autocast keep `nn.Conv2d`'s own path."""
    from tekken_diffusers.models.autoencoders.cpu_convolution import OneDNNConv2d

    vae = tiny_dcae().eval()
    convs = [m for m in vae.decoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(type(m) is OneDNNConv2d for m in convs)
    assert all(type(m) is torch.nn.Conv2d for m in vae.encoder.modules() if isinstance(m, torch.nn.Conv2d))
    reference = AutoencoderDC.from_config(vae.config)  # the same layers as plain nn.Conv2d
    assert reference.load_state_dict(vae.state_dict(), strict=False).unexpected_keys == []
    reference.eval()

    calls = []
    onednn = torch.mkldnn_convolution
    monkeypatch.setattr(torch, "mkldnn_convolution", lambda *args: calls.append(args[0].shape) or onednn(*args))
    latents = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pixels_out = vae.decode(latents).sample
        assert len(calls) == len(convs)
        torch.testing.assert_close(pixels_out, reference.decode(latents).sample, atol=1e-5, rtol=1e-5)
        calls.clear()
        with torch.autocast("cpu", torch.bfloat16):
            vae.decode(latents)
        assert calls == []
    latents.requires_grad_(True)
    vae.decode(latents).sample.square().mean().backward()
    assert calls == [] and latents.grad is not None and convs[0].weight.grad is not None


def test_dcae_rejects_bad_inputs_and_configs():
    vae = tiny_dcae()
    with pytest.raises(ValueError, match="takes 3 channels"):
        vae.encode(pixels(1, 4, 16, 16))
    with pytest.raises(ValueError, match="divisible by the spatial compression 2"):
        vae.encode(pixels(1, 3, 15, 16))
    with pytest.raises(ValueError, match=r"frames \[B, C, H, W\] or clips"):
        vae.encode(pixels(3, 16, 16))
    with pytest.raises(ValueError, match=r"latents \[B, 4, H, W\]"):
        vae.decode(torch.zeros(1, 5, 8, 8))
    with pytest.raises(ValueError, match="latent_channels=16 must divide the last encoder width 8"):
        tiny_dcae(latent_channels=16)
    with pytest.raises(ValueError, match="4·8 must be divisible by 48"):
        tiny_dcae(encoder_block_out_channels=(8, 48), decoder_block_out_channels=(8, 48))
    with pytest.raises(ValueError, match="latents_mean has 3 values but latent_channels is 4"):
        tiny_dcae(latents_mean=[0.0] * 3, latents_std=[1.0] * 3)
    with pytest.raises(ValueError, match="given together"):
        tiny_dcae(latents_mean=[0.0] * 4)


def test_the_default_config_is_64x64_to_8x8x16():
    vae = TekkenAutoencoderDC()
    assert vae.spatial_compression_ratio == 8 and vae.config.latent_channels == 16
    # the shipped model must stay small: ≤ 10 MB of float32 weights
    assert sum(p.numel() for p in vae.parameters()) * 4 <= 10 * 2**20


# --- pose channel ---------------------------------------------------------------------------------------------------


def test_pose_channel_is_channel_max_then_3x3_gaussian():
    pose = np.zeros((2, 3, 6, 6), dtype=np.uint8)
    pose[0, 1, 2, 3] = 255  # a single lit pixel in one of the three channels
    pose[1, :, 0, 0] = (10, 200, 30)  # a corner pixel: max over channels is 200, reflect padding at the border
    channel = pose_to_channel(pose)
    assert channel.shape == (2, 1, 6, 6) and channel.dtype == torch.float32
    # sigma 0.8 (torchvision's default for 3 taps): 1-D weights exp(-x²/1.28), normalised = [.2390, .5220, .2390]
    side, centre = np.exp(-1 / 1.28), 1.0
    weights = np.array([side, centre, side]) / (2 * side + centre)
    expected = np.zeros((6, 6))
    expected[1:4, 2:5] = 255 * np.outer(weights, weights)
    np.testing.assert_allclose(channel[0, 0].numpy(), expected, rtol=1e-5, atol=1e-4)
    assert weights[0] == pytest.approx(0.2390, abs=1e-4)
    # with reflect padding the corner's mirrored neighbours are zeros: only the centre weight applies at (0, 0)
    assert channel[1, 0, 0, 0].item() == pytest.approx(200 * weights[1] ** 2, rel=1e-5)
    assert channel[1, 0, 1, 1].item() == pytest.approx(200 * weights[0] ** 2, rel=1e-5)


def test_pose_files_feed_a_four_channel_dcae(tmp_path):
    round_path = tmp_path / "train" / "round_0003.npz"
    pose_dir = tmp_path / "poses"
    pose_dir.mkdir()
    rng = np.random.default_rng(0)
    pose_images = rng.integers(0, 256, (3, 3, 16, 16), dtype=np.uint8)
    np.savez(pose_dir / "round_0003_two_player_poses.npz", pose_images=pose_images)
    assert pose_path_for_round(round_path, pose_dir) == pose_dir / "round_0003_two_player_poses.npz"

    channel = load_pose_channel(round_path, pose_dir, num_frames=3)
    torch.testing.assert_close(channel, pose_to_channel(pose_images))
    images = rng.integers(0, 256, (3, 3, 16, 16), dtype=np.uint8)
    vae_input = frames_to_pixels(images, channel)  # (3, 4, 16, 16)
    assert vae_input.shape == (3, 4, 16, 16)
    torch.testing.assert_close(vae_input[:, :3], torch.from_numpy(images).float() / 127.5 - 1)
    torch.testing.assert_close(vae_input[:, 3:], channel / 127.5 - 1)

    vae = tiny_dcae(in_channels=4)
    with torch.no_grad():
        latents = vae.encode(vae_input).latent_dist.mode()
        assert latents.shape == (3, 4, 8, 8)
        assert vae.decode(latents).sample.shape == (3, 4, 16, 16)  # RGB + pose back
    with pytest.raises(ValueError, match=r"takes 4 channels \(RGB \+ pose\)"):
        vae.encode(vae_input[:, :3])


def test_pose_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="round_0000_two_player_poses.npz: no pose file"):
        load_pose_channel(tmp_path / "round_0000.npz", tmp_path)
    np.savez(tmp_path / "short.npz", pose_images=np.zeros((2, 3, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="short.npz: pose_images has 2 frames but the round has 5"):
        load_pose_images(tmp_path / "short.npz", num_frames=5)
    np.savez(tmp_path / "gray.npz", pose_images=np.zeros((2, 1, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"gray.npz: pose_images: expected shape \(T, 3, H, W\)"):
        load_pose_images(tmp_path / "gray.npz")
    np.savez(tmp_path / "other.npz", poses=np.zeros((2, 3, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="other.npz: pose_images: expected"):
        load_pose_images(tmp_path / "other.npz")


def test_frames_pixels_round_trip():
    images = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(2, 3, 16, 16)
    vae_input = frames_to_pixels(images)
    assert vae_input.min() == -1 and vae_input.max() == 1
    assert torch.equal(pixels_to_frames(vae_input), images)
    clamped = pixels_to_frames(torch.tensor([-3.0, 0.0, 3.0]))
    assert torch.equal(clamped, torch.tensor([0, 128, 255], dtype=torch.uint8))
    with pytest.raises(ValueError, match="expected uint8"):
        frames_to_pixels(images.float())
    with pytest.raises(ValueError, match="pose channel: expected shape"):
        frames_to_pixels(images, torch.zeros(2, 1, 8, 8))


# --- frame bookkeeping and action pooling --------------------------------------------------------------------------


def test_frame_counts_and_groups():
    assert [num_latent_frames(t, 8) for t in (1, 9, 17, 25)] == [1, 2, 3, 4]
    assert [num_latent_frames(t, 4) for t in (1, 5, 9)] == [1, 2, 3]
    assert [num_frames_for_latents(n, 8) for n in (1, 2, 3)] == [1, 9, 17]
    assert [num_latent_frames(t, 1) for t in (1, 2, 7)] == [1, 2, 7]
    assert latent_frame_groups(9, 4) == [range(0, 1), range(1, 5), range(5, 9)]
    with pytest.raises(ValueError, match=r"12 frames: .* 1 \+ k·8 .* nearest valid counts are 9 and 17"):
        num_latent_frames(12, 8)
    with pytest.raises(ValueError, match="nearest valid counts are 5 and 9"):
        num_latent_frames(8, 4)
    with pytest.raises(ValueError, match="0 frames"):
        num_latent_frames(0, 4)


def test_pool_actions_or_and_mean():
    # frame 0 alone; frames 1-4 and 5-8 pooled (r = 4)
    actions = torch.tensor([UP, LP, 0, RIGHT, 0, 0, 0, 0, RK], dtype=torch.uint8)
    pooled = pool_actions(actions, 4, mode="or")
    assert pooled.dtype == torch.uint8 and pooled.tolist() == [UP, LP | RIGHT, RK]

    mean = pool_actions(actions, 4, mode="mean")  # (3, 8) bits, MSB first: Up Down Left Right LP RP LK RK
    assert mean.shape == (3, 8)
    expected = torch.zeros(3, 8)
    expected[0, 0] = 1.0
    expected[1, 3] = expected[1, 4] = 0.25
    expected[2, 7] = 0.25
    torch.testing.assert_close(mean, expected)

    batch = np.stack([actions.numpy(), np.full(9, DOWN | LEFT, dtype=np.uint8)])  # (2, 9), numpy in → numpy out
    pooled_batch = pool_actions(batch, 4)
    assert isinstance(pooled_batch, np.ndarray) and pooled_batch.tolist() == [[UP, LP | RIGHT, RK], [DOWN | LEFT] * 3]
    with pytest.raises(ValueError, match="cannot encode a clip of 8 frames"):
        pool_actions(actions[:8], 4)
    with pytest.raises(ValueError, match="unknown action pooling mode 'max'; known modes: or, mean"):
        pool_actions(actions, 4, mode="max")


def test_pool_first_last_and_frames_that_continue_a_clip():
    # r = 4: frame 0 alone, then frames 1-4 and 5-8
    actions = torch.tensor([UP, LP, 0, RIGHT, RK, DOWN, 0, LEFT, 0], dtype=torch.uint8)
    assert pool_actions(actions, 4, mode="first").tolist() == [UP, LP, DOWN]
    assert pool_actions(actions, 4, mode="last").tolist() == [UP, RK, 0]
    assert pool_actions(actions, 4, mode="or").tolist() == [UP, LP | RIGHT | RK, DOWN | LEFT]
    # Frames generated after a context continue a clip: every group has r frames, none is alone.
    bits = ids_to_bits(actions[1:])  # 8 frames → 2 latent frames
    continued = pool_action_bits(bits, 4, mode="or", starts_clip=False)
    assert bits_to_ids(continued).tolist() == [LP | RIGHT | RK, DOWN | LEFT]
    assert bits_to_ids(pool_action_bits(bits, 4, mode="last", starts_clip=False)).tolist() == [RK, 0]
    with pytest.raises(ValueError, match="7 frames after the start of a clip must be a multiple of 4"):
        pool_action_bits(bits[:7], 4, starts_clip=False)


def test_per_frame_vae_passes_actions_through():
    actions = torch.tensor([UP, LP, 0, RK], dtype=torch.uint8)
    assert torch.equal(tiny_dcae().pool_actions(actions), actions)


# --- LTX-Video and Wan wrappers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [tiny_ltx, tiny_wan], ids=["ltx", "wan"])
def test_video_vae_save_load_gives_identical_outputs(tmp_path, make):
    vae = make()
    vae.save_pretrained(tmp_path)
    loaded = type(vae).from_pretrained(tmp_path)
    clip = pixels(1, 3, 5, 16, 16, seed=4)
    with torch.no_grad():
        latents = vae.encode(clip).latent_dist.mode()
        assert torch.equal(loaded.encode(clip).latent_dist.mode(), latents)
        assert torch.equal(loaded.decode(latents).sample, vae.decode(latents).sample)
    assert latent_statistics(loaded) == latent_statistics(vae)


@pytest.mark.parametrize(
    "make, ratio, spatial, channels", [(tiny_ltx, 4, 4, 8), (tiny_wan, 4, 8, 16)], ids=["ltx", "wan"]
)
def test_video_vae_frame_rules(make, ratio, spatial, channels):
    vae = make()
    assert vae.temporal_compression_ratio == ratio and vae.latent_channels == channels
    size = 16
    with torch.no_grad():
        for num_frames, num_latent in ((1, 1), (1 + ratio, 2), (1 + 2 * ratio, 3)):
            posterior = vae.encode(pixels(1, 3, num_frames, size, size)).latent_dist
            assert isinstance(posterior, DiagonalGaussianDistribution)
            latents = posterior.mode()
            assert latents.shape == (1, channels, num_latent, size // spatial, size // spatial)
            assert vae.num_latent_frames(num_frames) == num_latent
            assert vae.decode(latents).sample.shape == (1, 3, vae.num_frames_for_latents(num_latent), size, size)
        # a frame is a one-frame clip, and comes back as a frame
        frame_latents = vae.encode(pixels(2, 3, size, size)).latent_dist.sample(torch.Generator().manual_seed(0))
        assert frame_latents.shape == (2, channels, size // spatial, size // spatial)
        assert vae.decode(frame_latents).sample.shape == (2, 3, size, size)
        for bad in (2, ratio, 2 + ratio):
            with pytest.raises(ValueError, match=f"cannot encode a clip of {bad} frames"):
                vae.encode(pixels(1, 3, bad, size, size))
        with pytest.raises(ValueError, match="divisible by the spatial compression"):
            vae.encode(pixels(1, 3, 1, size + spatial // 2, size))
        with pytest.raises(ValueError, match=f"latents \\[B, {channels}, \\(T,\\) h, w\\]"):
            vae.decode(torch.zeros(1, channels + 1, 2, 2))
    actions = torch.zeros(1 + ratio, dtype=torch.uint8)
    actions[ratio] = LP
    assert vae.pool_actions(actions).tolist() == [0, LP]


def test_real_ltx_and_wan_configs_compress_time_by_8_and_4():
    # the published configs, built on the meta device (no weights): LTX-Video 0.9.x and Wan 2.1
    with torch.device("meta"):
        ltx = LTXVideoVAE()
        wan = WanVAE()
    assert ltx.temporal_compression_ratio == 8 and ltx.num_latent_frames(17) == 3
    assert wan.temporal_compression_ratio == 4 and wan.num_latent_frames(17) == 5


@pytest.mark.parametrize(
    "cls, repo", [(LTXVideoVAE, "Lightricks/LTX-Video"), (WanVAE, "Wan-AI/Wan2.1-T2V-1.3B-Diffusers")]
)
def test_from_pretrained_defaults_to_the_originals_hub_checkpoint(monkeypatch, cls, repo):
    calls = []

    def fake_from_pretrained(klass, path, **kwargs):
        calls.append((klass, path, kwargs))
        return "loaded"

    monkeypatch.setattr(ModelMixin, "from_pretrained", classmethod(fake_from_pretrained))
    assert cls.from_pretrained(dtype=torch.bfloat16) == "loaded"
    assert calls[-1] == (cls, repo, {"subfolder": "vae", "dtype": torch.bfloat16})
    cls.from_pretrained("some/other", subfolder="x")
    assert calls[-1] == (cls, "some/other", {"subfolder": "x"})


# --- latent normalisation ------------------------------------------------------------------------------------------


def test_normalize_matches_the_formulas_and_inverts():
    latents = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0)) * 3 + 1
    mean, std = [0.5, -1.0, 2.0], [2.0, 0.5, 4.0]
    per_channel = {"latents_mean": mean, "latents_std": std, "scaling_factor": 0.8}
    expected = (latents - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1) * 0.8
    torch.testing.assert_close(normalize_latents(latents, per_channel), expected)
    torch.testing.assert_close(denormalize_latents(normalize_latents(latents, per_channel), per_channel), latents)

    shifted = {"scaling_factor": 0.3611, "shift_factor": 0.1159}  # Flux's numbers
    torch.testing.assert_close(normalize_latents(latents, shifted), (latents - 0.1159) * 0.3611)
    torch.testing.assert_close(denormalize_latents(normalize_latents(latents, shifted), shifted), latents)
    # no statistics at all: identity
    assert torch.equal(normalize_latents(latents, {}), latents)


def test_normalize_reads_each_vae_convention():
    latents = torch.randn(1, 4, 3, 8, 8)  # [B, C, T, h, w]
    dcae = tiny_dcae(latents_mean=[1.0, 2.0, 3.0, 4.0], latents_std=[1.0, 2.0, 4.0, 8.0])
    expected = (latents - torch.tensor([1.0, 2, 3, 4]).view(1, 4, 1, 1, 1)) / torch.tensor([1.0, 2, 4, 8]).view(
        1, 4, 1, 1, 1
    )
    torch.testing.assert_close(normalize_latents(latents, dcae), expected)
    torch.testing.assert_close(normalize_latents(latents, dcae.config), expected)

    ltx = tiny_ltx()  # LTX: mean/std are buffers in the module, scaling_factor in the config
    ltx.latents_mean.copy_(torch.arange(8.0))
    ltx.latents_std.copy_(torch.full((8,), 2.0))
    ltx_latents = torch.randn(1, 8, 2, 4, 4)
    torch.testing.assert_close(
        normalize_latents(ltx_latents, ltx), (ltx_latents - torch.arange(8.0).view(1, 8, 1, 1, 1)) / 2.0
    )

    wan = tiny_wan()  # Wan: config lists, no scaling_factor
    stats = latent_statistics(wan)
    assert stats.scaling_factor == 1.0 and stats.mean == tuple(wan.config.latents_mean)
    wan_latents = torch.randn(1, 16, 2, 2, 2)
    mean = torch.tensor(wan.config.latents_mean).view(1, 16, 1, 1, 1)
    std = torch.tensor(wan.config.latents_std).view(1, 16, 1, 1, 1)
    torch.testing.assert_close(normalize_latents(wan_latents, wan), (wan_latents - mean) / std)


def test_normalize_channel_dim_dtype_and_errors():
    stats = LatentStatistics(mean=(1.0, -1.0), std=(2.0, 0.5))
    latents = torch.randn(2, 5, 2, 3, 3)  # [B, T, C, h, w]
    expected = (latents - torch.tensor([1.0, -1.0]).view(1, 1, 2, 1, 1)) / torch.tensor([2.0, 0.5]).view(1, 1, 2, 1, 1)
    torch.testing.assert_close(normalize_latents(latents, stats, channel_dim=2), expected)
    torch.testing.assert_close(normalize_latents(latents, stats, channel_dim=-3), expected)
    bf16 = latents.bfloat16()
    assert normalize_latents(bf16, stats, channel_dim=2).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="latents have 5 channels at dim 1 .* latents_mean/latents_std have 2"):
        normalize_latents(latents, stats)
    with pytest.raises(ValueError, match="latents_std must be positive"):
        LatentStatistics(mean=(0.0,), std=(0.0,))
    with pytest.raises(ValueError, match="given together"):
        LatentStatistics(mean=(0.0,))
    with pytest.raises(TypeError, match="expected a VAE module, a config mapping or LatentStatistics"):
        normalize_latents(latents, 3.0)


# --- the shipped Boxing model -------------------------------------------------------------------------------------


def test_shipped_boxing_dcae_reconstructs_recorded_frames(boxing_rounds):
    from tekken_diffusers.data.rounds import list_rounds, load_round
    from tekken_diffusers.evaluation.metrics import psnr

    folder = Path(__file__).resolve().parents[2] / "pipelines" / "boxing-dcae"
    assert (folder / "diffusion_pytorch_model.safetensors").stat().st_size <= 10 * 2**20
    vae = TekkenAutoencoderDC.from_pretrained(folder)
    assert vae.config.in_channels == 3 and vae.config.latent_channels == 16
    assert len(vae.config.latents_mean) == len(vae.config.latents_std) == 16
    frames = torch.from_numpy(load_round(list_rounds(boxing_rounds / "val")[0]).trimmed().images)  # (T, 3, 64, 64)
    with torch.no_grad():
        latents = vae.encode(frames_to_pixels(frames)).latent_dist.mode()
        assert latents.shape == (len(frames), 16, 8, 8)
        # normalised latents are roughly standard (the statistics were measured on other rounds of the same game)
        normalized = normalize_latents(latents, vae)
        assert normalized.mean().abs() < 0.5 and 0.5 < normalized.std() < 1.5
        reconstruction = pixels_to_frames(vae.decode(latents).sample)
    assert psnr(reconstruction.float(), frames.float(), data_range=255.0).mean() > 35.0
