"""End-to-end runs of training/train_world_model.py on a tiny latent dataset, as a user launches it."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "training" / "train_world_model.py"
DEBUG = ROOT / "training" / "configs" / "debug_tiny.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def latent_dataset(tmp_path_factory) -> Path:
    """Boxing recorded at 8×8, encoded with a random tiny DC-AE (4×4×4 latents, the tiny preset's shape)."""
    pytest.importorskip("ale_py")
    from tekken_diffusers import TekkenAutoencoderDC
    from tekken_diffusers.pipelines.random_pipeline import TINY_VAE_CONFIG

    root = tmp_path_factory.mktemp("wm")
    torch.manual_seed(0)
    TekkenAutoencoderDC(**TINY_VAE_CONFIG).save_pretrained(root / "vae")
    for command in (
        ["scripts/record_atari.py", "--out", root / "rounds", "--rounds", "5", "--max-frames", "40",
         "--size", "8", "8", "--val-fraction", "0.2", "--no-progress"],
        ["scripts/encode_latents.py", "--rounds", root / "rounds", "--vae", root / "vae", "--out", root / "latents",
         "--no-progress"],
    ):  # fmt: skip
        subprocess.run([sys.executable, *map(str, command)], cwd=ROOT, check=True, capture_output=True, env=ENV)
    return root / "latents"


def train(output_dir: Path, dataset: Path, *args: str, launcher=None, wait=True):
    launcher = launcher or [sys.executable]
    command = [*launcher, str(SCRIPT), "--config", str(DEBUG), "--dataset", str(dataset),
               "--output_dir", str(output_dir), *args]  # fmt: skip
    if not wait:
        return subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    result = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def losses(output_dir: Path) -> dict[int, float]:
    """Step → loss; a step logged twice (before a kill and after the resume) keeps the later value."""
    rows = [json.loads(line) for line in (output_dir / "loss_history.jsonl").read_text().splitlines()]
    return {row["step"]: row["loss"] for row in rows}


@pytest.mark.slow
def test_debug_run_saves_a_loadable_pipeline(latent_dataset, tmp_path):
    from tekken_diffusers import TekkenWorldModelPipeline

    out = tmp_path / "out"
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    train(out, latent_dataset, "--max_train_steps", "4", launcher=launcher)
    pipe = TekkenWorldModelPipeline.from_pretrained(out)
    assert type(pipe.vae).__name__ == "TekkenAutoencoderDC" and pipe.scheduler.config.shift == 3.0
    assert pipe.default_inference_steps == 2  # debug_tiny.yaml's validation_inference_steps
    assert sorted(losses(out)) == [1, 2, 3, 4]
    assert [p.name for p in sorted(out.glob("checkpoint-*"))] == ["checkpoint-2", "checkpoint-4"]
    assert (out / "checkpoint-4" / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    assert (out / "checkpoint-4" / "transformer_ema" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(out.glob("checkpoint-4/*.safetensors"))  # the model is saved by the hook, not pickled again
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["validation"]["teacher_forced_psnr_copy_last"] > 0
    assert (out / "validation" / "step-0000004.mp4").is_file()
    assert "## Training" in (out / "README.md").read_text()


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_same_losses(latent_dataset, tmp_path):
    steps = ["--max_train_steps", "24", "--checkpointing_steps", "3", "--checkpoints_total_limit", "10"]
    reference = tmp_path / "reference"
    train(reference, latent_dataset, *steps)

    killed = tmp_path / "killed"
    process = train(killed, latent_dataset, *steps, wait=False)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        history = killed / "loss_history.jsonl"
        if history.exists() and len(history.read_text().splitlines()) >= 8:
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "training finished before it could be killed"
    killed_at = max(losses(killed))
    assert killed_at < 24
    # Every checkpoint that exists is complete (a kill during a save leaves only a hidden .tmp folder).
    for checkpoint in killed.glob("checkpoint-*"):
        assert (checkpoint / "transformer" / "config.json").is_file()
        assert (checkpoint / "optimizer.bin").is_file() and (checkpoint / "scheduler.bin").is_file()

    train(killed, latent_dataset, *steps, "--resume_from_checkpoint", "latest")
    expected, resumed = losses(reference), losses(killed)
    assert sorted(resumed) == list(range(1, 25))
    assert resumed == expected  # exactly: weights, optimizer, LR schedule, EMA, data position and noise restored
    reference_weights = (reference / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert (killed / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes() == reference_weights


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_first(latent_dataset, tmp_path):
    out = tmp_path / "out"
    process = train(out, latent_dataset, "--max_train_steps", "100000", "--checkpointing_steps", "100000", wait=False)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (out / "loss_history.jsonl").exists():
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-2000:]
    stopped_at = max(losses(out))
    assert [p.name for p in out.glob("checkpoint-*")] == [f"checkpoint-{stopped_at}"]
    assert b"resume with --resume_from_checkpoint latest" in stderr


@pytest.mark.slow
def test_two_processes_keep_identical_weights(latent_dataset, tmp_path):
    out = tmp_path / "ddp"
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
                "29533"]  # fmt: skip
    env_backup = dict(ENV)
    ENV["ACCELERATE_USE_CPU"] = "1"
    try:
        result = train(out, latent_dataset, "--max_train_steps", "3", "--train_batch_size", "2", launcher=launcher)
    finally:
        ENV.clear()
        ENV.update(env_backup)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["num_processes"] == 2, result.stderr[-2000:]
    first, second = summary["weight_checksums"]
    assert first == second
    # Real synchronisation: the weights moved away from the initialisation, identically on both ranks.
    from tekken_diffusers import TekkenWorldModelTransformer

    initial = TekkenWorldModelTransformer.from_preset("tiny", in_channels=4, sample_size=(4, 4))
    assert first[0] != pytest.approx(sum(float(p.detach().double().sum()) for p in initial.parameters()), abs=1e-9)


def _script_module():
    sys.path.insert(0, str(ROOT / "training"))
    try:
        import train_world_model
    finally:
        sys.path.pop(0)
    return train_world_model


def test_config_errors(tmp_path, capsys):
    parse_args = _script_module().parse_args
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: tiny\nlearning_rat: 0.1\n")
    for args, message in (
        (["--config", str(bad)], "unknown setting 'learning_rat'; known settings: action_dropout"),
        (["--config", str(DEBUG), "--dataset", "x", "--preset", "huge"], "preset 'huge' is unknown"),
        (["--config", str(DEBUG), "--dataset", "x", "--train_batch_size", "two"],
         "train_batch_size: expected an integer"),
        (["--config", str(DEBUG), "--dataset", "x", "--mixed_precision", "fp16"],
         "mixed_precision must be 'auto', 'no' or 'bf16'"),
        (["--config", str(DEBUG)], "--dataset (or `dataset:` in the config) is required"),
    ):  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            parse_args(args)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    config = parse_args(["--config", str(DEBUG), "--dataset", "x", "--learning_rate", "0.5"])
    assert config.learning_rate == 0.5 and config.preset == "tiny" and config.window_length == 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpointing_steps", "0"], "checkpointing_steps must be >= 1, got 0"),
        (["--logging_steps", "0"], "logging_steps must be >= 1, got 0"),
        (["--validation_steps", "-1"], "validation_steps must be >= 0, got -1"),
        (["--learning_rate", "-1"], "learning_rate must be a finite number > 0, got -1.0"),
        (["--learning_rate", "nan"], "learning_rate must be a finite number > 0, got nan"),
        (["--lr_scheduler", "bogus"], "lr_scheduler 'bogus' is unknown; known: linear, cosine"),
        (["--model_overrides", '{"num_layerz": 2}'], "model_overrides: unknown transformer settings ['num_layerz']"),
        (["--ema_decay", "2"], "ema_decay must lie in [0, 1], got 2.0"),
        (["--adam_beta2", "1.5"], "adam_beta2 must lie in [0, 1), got 1.5"),
        (["--report_to", "tensorbored"], "report_to must be one of tensorboard, wandb, all, auto, none"),
        (["--dataset", "./no/such/latents"], "--dataset ./no/such/latents: no such folder"),
        (["--vae", "no_such_vae"], "--vae no_such_vae: no such folder"),
        (["--action_pooling", "mean"], "action_pooling must be one of or, first, last"),
        (["--grow_num_layers", "12"], "grow_num_layers / grow_mlp_ratio grow a trained model: they need pretrained"),
        (["--pretrained_transformer", ".", "--grow_mlp_ratio", "0"], "grow_mlp_ratio must be a finite number > 0"),
    ],
)
def test_bad_settings_are_one_line_errors(args, message, capsys):
    """Issue 12.6/12.7: each of these ran (or crashed mid-run) before; now parsing refuses it, naming the setting."""
    with pytest.raises(SystemExit) as exit_info:
        _script_module().parse_args(["--config", str(DEBUG), "--dataset", "x", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: tiny\nlearning_rate: [1e-3\n")
    with pytest.raises(SystemExit) as exit_info:
        _script_module().parse_args(["--config", str(bad), "--dataset", "x"])
    assert exit_info.value.code == 2
    assert f"{bad}: not valid YAML at line 3" in capsys.readouterr().err


def test_an_output_dir_under_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit):
        _script_module().parse_args(["--config", str(DEBUG), "--dataset", "x", "--output_dir", str(tmp_path / "file")])
    assert "a file is in the way" in capsys.readouterr().err


@pytest.fixture(scope="module")
def small_latents(tmp_path_factory) -> tuple[Path, Path]:
    """Synthetic 16×16 rounds encoded in-process with a tiny DC-AE (4×8×8 latents): (dataset, VAE folder)."""
    from tekken_diffusers.cli import encode_latents
    from tekken_diffusers.data.rounds import save_round
    from tests.conftest import make_round
    from tests.data.test_latent_dataset import tiny_vae

    root = tmp_path_factory.mktemp("small")
    for split, count in (("train", 3), ("val", 1)):
        for index in range(count):
            save_round(root / "rounds" / split / f"round_{index:04d}.npz", make_round(12 + index, seed=index))
    tiny_vae().save_pretrained(root / "vae")
    argv = ["--rounds", root / "rounds", "--vae", root / "vae", "--out", root / "latents", "--no-progress"]
    assert encode_latents.main([str(a) for a in argv]) == 0
    return root / "latents", root / "vae"


def main_error(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        _script_module().main(["--config", str(DEBUG), *map(str, args)])
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_a_vae_with_other_weights_is_refused_unless_allowed(small_latents, tmp_path, capsys):
    """Issue 12.2: same config, perturbed weights: the pipeline would pair the transformer with the wrong VAE."""
    from tekken_diffusers import TekkenAutoencoderDC
    from tekken_diffusers.data import load_latent_info

    dataset, vae_dir = small_latents
    other = TekkenAutoencoderDC.from_pretrained(vae_dir)
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)
    other.save_pretrained(tmp_path / "other_vae")
    err = main_error(capsys, "--dataset", dataset, "--output_dir", tmp_path / "out", "--vae", tmp_path / "other_vae")
    assert f"--vae {tmp_path / 'other_vae'}: the VAE does not match the latent dataset: weights_hash: dataset" in err
    assert "pass --allow_vae_mismatch to pair them anyway" in err and "Traceback" not in err

    train_world_model = _script_module()
    info = load_latent_info(dataset)
    config = train_world_model.TrainWorldModelConfig(dataset=str(dataset), vae=str(tmp_path / "other_vae"))
    allowed = train_world_model.resolve_vae(dataclasses.replace(config, allow_vae_mismatch=True), info)
    assert torch.equal(next(allowed.parameters()), next(other.parameters()))
    assert train_world_model.resolve_vae(dataclasses.replace(config, vae=None), info) is not None  # the dataset's


def test_run_time_mistakes_are_one_line_errors(small_latents, tmp_path, capsys):
    """Issue 12.6: these used to end in a traceback (or a ZeroDivisionError after the first step)."""
    dataset, _ = small_latents
    out = tmp_path / "out"
    common = ("--dataset", dataset, "--output_dir", out, "--report_to", "none")
    assert "no round has 1000 valid latent frames" in main_error(capsys, *common, "--window_length", "1000")
    err = main_error(capsys, *common, "--train_batch_size", "1000")
    assert "--train_batch_size 1000: the train split has 6 windows of 8 frames, fewer than one batch" in err
    err = main_error(capsys, *common, "--resume_from_checkpoint", "checkpoint-7")
    assert "--resume_from_checkpoint checkpoint-7: no checkpoint-N folder there" in err

    # A checkpoint of another architecture is named before anything is loaded.
    from tekken_diffusers.models import TekkenWorldModelTransformer

    other = TekkenWorldModelTransformer.from_preset("tiny", in_channels=4, sample_size=(8, 8), num_layers=1)
    other.save_config(out / "checkpoint-2" / "transformer")
    err = main_error(capsys, *common, "--resume_from_checkpoint", "latest")
    assert "checkpoint-2: it holds another transformer (num_layers: checkpoint 1, this run 2)" in err


def test_a_resumed_run_forgets_the_losses_after_its_checkpoint(tmp_path):
    from tekken_diffusers.training_utils import trim_loss_history

    history = tmp_path / "loss_history.jsonl"
    history.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in range(1, 8)) + '{"step": 8')
    trim_loss_history(history, 4)
    assert [json.loads(line)["step"] for line in history.read_text().splitlines()] == [1, 2, 3, 4]


# Runs a script until it imports torch, then prints the OpenMP wait policy that torch's GNU OpenMP would read.
WAIT_POLICY_PROBE = """
import os, runpy, sys

class Probe:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            print(os.environ.get("OMP_WAIT_POLICY"), flush=True)
            os._exit(0)

sys.meta_path.insert(0, Probe())
sys.argv = [sys.argv[1], "--help"]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize(("user", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_wait_policy_is_set_before_torch_loads_openmp(user, expected):
    """Issue 11.3: GNU OpenMP reads OMP_WAIT_POLICY once, when torch loads it; a value the user set is kept."""
    env = {key: value for key, value in ENV.items() if key != "OMP_WAIT_POLICY"}
    if user is not None:
        env["OMP_WAIT_POLICY"] = user
    result = subprocess.run([sys.executable, "-c", WAIT_POLICY_PROBE, str(SCRIPT)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.stdout.strip() == expected, result.stderr[-2000:]


class AcceleratorCreated(Exception):
    """Raised by the stand-in Accelerator: main() got as far as choosing the precision."""


@pytest.mark.parametrize(
    ("flags", "requested", "expected"),
    [
        ({"avx2"}, "auto", "no"),  # the Zen 3: bf16 would be emulated
        ({"avx2", "avx512_bf16"}, "auto", "bf16"),  # Zen 4
        ({"avx2", "amx_bf16"}, "auto", "bf16"),  # Sapphire Rapids
        ({"avx2", "avx512_bf16"}, "no", "no"),
        ({"avx2"}, "bf16", "bf16"),
    ],
)
def test_mixed_precision_auto_is_resolved_at_start(flags, requested, expected, monkeypatch, caplog):
    """Issue 11.2: `mixed_precision: auto` is bf16 only where the CPU computes it natively; "no" and "bf16" stay."""
    from tekken_diffusers import runtime

    train_world_model = _script_module()
    monkeypatch.setenv("ACCELERATE_USE_CPU", "1")
    monkeypatch.setattr(runtime, "cpu_flags", lambda: flags)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    created = {}

    def accelerator(**kwargs):
        created.update(kwargs)
        raise AcceleratorCreated

    monkeypatch.setattr(train_world_model, "Accelerator", accelerator)
    argv = ["--config", str(DEBUG), "--dataset", "x", "--report_to", "none", "--mixed_precision", requested]
    with caplog.at_level("INFO"), pytest.raises(AcceleratorCreated):
        train_world_model.main(argv)
    assert created["mixed_precision"] == expected
    assert f"mixed_precision {requested} -> {expected}" in caplog.text


def test_shipped_configs_parse():
    train_world_model = _script_module()
    from tekken_diffusers.training_utils import load_config

    for path in sorted((ROOT / "training" / "configs").glob("*.yaml")):
        if path.name.startswith("vae"):
            continue
        config = load_config(train_world_model.TrainWorldModelConfig, path, {"dataset": "x"})
        assert config.preset in ("tiny", "small", "compact", "tekken-large"), path
        if path.stem in ("boxing_small", "boxing_compact"):  # the CPU configs pick the precision for the machine
            assert config.mixed_precision == "auto", path


@pytest.mark.slow
def test_time_budget_stops_and_saves_the_pipeline(latent_dataset, tmp_path):
    out = tmp_path / "budget"
    train(out, latent_dataset, "--max_train_steps", "1000000", "--max_train_minutes", "0.02")
    summary = json.loads((out / "train_summary.json").read_text())
    assert 1 <= summary["steps"] < 1000000
    assert (out / "model_index.json").is_file() and (out / f"checkpoint-{summary['steps']}").is_dir()


@pytest.mark.slow
def test_teacher_forced_copy_path_run_saves_a_pipeline_that_loads_with_its_config(latent_dataset, tmp_path):
    from tekken_diffusers import TekkenWorldModelPipeline

    out = tmp_path / "tf"
    train(out, latent_dataset, "--max_train_steps", "3", "--teacher_forcing_prob", "1.0", "--model_overrides",
          '{"prev_frame_conditioning": true, "prediction_type": "prev_frame_residual"}')  # fmt: skip
    pipe = TekkenWorldModelPipeline.from_pretrained(out)
    assert pipe.transformer.config.prediction_type == "prev_frame_residual"
    assert pipe.transformer.config.prev_frame_conditioning
    assert sorted(losses(out)) == [1, 2, 3]


@pytest.mark.slow
def test_a_pretrained_model_grows_before_training_and_resumes_grown(latent_dataset, tmp_path):
    from tekken_diffusers import TekkenWorldModelPipeline
    from tekken_diffusers.models import TekkenWorldModelTransformer

    torch.manual_seed(0)
    TekkenWorldModelTransformer.from_preset("tiny").save_pretrained(tmp_path / "trained")
    out, grow = tmp_path / "grown", ["--pretrained_transformer", str(tmp_path / "trained"), "--grow_num_layers", "4",
                                     "--grow_mlp_ratio", "6"]  # fmt: skip
    result = train(out, latent_dataset, "--max_train_steps", "2", *grow)
    assert "grew the transformer from 2 to 4 layers (trained blocks at [0, 3])" in result.stderr
    train(out, latent_dataset, "--max_train_steps", "4", *grow, "--resume_from_checkpoint", "latest")
    assert sorted(losses(out)) == [1, 2, 3, 4]
    config = TekkenWorldModelPipeline.from_pretrained(out).transformer.config
    assert (config.num_layers, config.mlp_ratio) == (4, 6.0)


def test_training_step_losses_in_each_parameterisation():
    """The residual loss of a fresh model at sigma = 1 is the copy-last error in units of the prior's deviation;
    teacher forcing draws context noise below its bound and targets over the whole range."""
    train_world_model = _script_module()
    from tekken_diffusers import TekkenFlowMatchScheduler
    from tekken_diffusers.data import WindowBatch
    from tekken_diffusers.models import TekkenWorldModelTransformer

    latents = torch.randn(2, 6, 4, 4, 4)
    batch = WindowBatch(
        latents=latents,
        actions=torch.zeros(2, 6, dtype=torch.uint8),
        action_bits=torch.zeros(2, 6, 8),
        valid=torch.ones(2, 6, dtype=torch.bool),
        round_ids=["a", "b"],
        starts=torch.zeros(2, dtype=torch.long),
    )
    config = train_world_model.TrainWorldModelConfig(dataset="x", preset="tiny", target_sigma_shift=1e6)
    model = TekkenWorldModelTransformer.from_preset(
        "tiny", prev_frame_conditioning=True, prediction_type="prev_frame_residual", prev_frame_variance=0.5
    )
    seen = {}

    class Spy(torch.nn.Module):  # wraps the model as DDP does (`.module`) and records what training passes it
        def __init__(self):
            super().__init__()
            self.module = model

        def forward(self, *args, **kwargs):
            seen.update(kwargs)
            return self.module(*args, **kwargs)

    spy = Spy()

    loss, per_frame, sigmas = train_world_model.training_step(
        spy,
        TekkenFlowMatchScheduler(),
        batch,
        config,
        torch.Generator().manual_seed(0),
        torch.device("cpu"),
        teacher_forcing=True,
    )
    assert torch.all(sigmas > 0.999)  # a huge shift puts every target at pure noise
    assert 0 <= seen["context_sigmas"].min() and seen["context_sigmas"].max() <= config.teacher_forcing_context_noise
    # at sigma ~ 1 a fresh model predicts the previous context frame; the loss is that error / c_out(1)^2 = / 0.5
    previous = seen["context_latents"][:, :-1]
    expected = (previous - latents[:, 1:]).square().mean(dim=(2, 3, 4)) / 0.5
    torch.testing.assert_close(per_frame[:, 1:], expected, rtol=2e-3, atol=2e-3)
    # diffusion forcing, velocity parameterisation: a fresh flow model outputs 0, so the loss is E[(noise - x0)^2]
    flow = TekkenWorldModelTransformer.from_preset("tiny")
    loss, _, _ = train_world_model.training_step(
        flow,
        TekkenFlowMatchScheduler(),
        batch,
        config,
        torch.Generator().manual_seed(0),
        torch.device("cpu"),
        teacher_forcing=False,
    )
    assert 1.5 < float(loss.detach()) < 2.5  # var(noise) + var(x0) = 2


def _own_prediction_setup():
    """A batch of 3 random windows of 6 frames, a fresh copy-path model, and a module wrapping it that records each
    call (`grad`, `batch`, `sample`, `sigmas` and the keyword arguments) in `calls`."""
    from tekken_diffusers.data import WindowBatch
    from tekken_diffusers.models import TekkenWorldModelTransformer

    latents = torch.randn(3, 6, 4, 4, 4)
    batch = WindowBatch(
        latents=latents,
        actions=torch.zeros(3, 6, dtype=torch.uint8),
        action_bits=torch.zeros(3, 6, 8),
        valid=torch.ones(3, 6, dtype=torch.bool),
        round_ids=["a", "b", "c"],
        starts=torch.zeros(3, dtype=torch.long),
    )
    model = TekkenWorldModelTransformer.from_preset(
        "tiny", prev_frame_conditioning=True, prediction_type="prev_frame_residual", prev_frame_variance=0.5
    )
    calls = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.module = model

        def forward(self, *args, **kwargs):
            calls.append({"grad": torch.is_grad_enabled(), "batch": args[0].shape[0], "sample": args[0],
                          "sigmas": args[1], **kwargs})  # fmt: skip
            return self.module(*args, **kwargs)

    return latents, batch, Spy, calls


def test_self_context_replaces_the_context_with_the_models_own_one_step_predictions():
    """`self_context_prob=1`: the context of the graded pass is the model's own one-step prediction of each frame (a
    fresh copy-path model predicts the recorded frame before it), made without gradient from the recorded context."""
    train_world_model = _script_module()
    from tekken_diffusers import TekkenFlowMatchScheduler

    latents, batch, Spy, calls = _own_prediction_setup()

    def run(prob: float) -> list[dict]:
        calls.clear()
        config = train_world_model.TrainWorldModelConfig(
            dataset="x", preset="tiny", teacher_forcing_context_noise=0.0, self_context_prob=prob
        )
        train_world_model.training_step(
            Spy(), TekkenFlowMatchScheduler(), batch, config, torch.Generator().manual_seed(0), torch.device("cpu"),
            teacher_forcing=True,
        )  # fmt: skip
        return list(calls)

    recorded = run(0.0)
    assert len(recorded) == 1 and torch.equal(recorded[0]["context_latents"], latents)
    own = run(1.0)
    assert len(own) == 2
    first, graded = own
    assert not first["grad"] and first["batch"] == 3 and torch.equal(first["context_latents"], latents)
    assert graded["grad"]
    # a fresh copy-path model's one-step estimate of frame t is frame t - 1 of its context
    torch.testing.assert_close(graded["context_latents"][:, 1:], latents[:, :-1], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(graded["context_latents"], latents)
    with pytest.raises(ValueError, match="self_context_prob must lie in"):
        train_world_model.TrainWorldModelConfig(dataset="x", preset="tiny", self_context_prob=1.5)


def test_self_target_noises_the_targets_around_the_models_own_estimate_from_the_same_noise():
    """`self_target_prob=1`: the graded pass sees each target as `(1 - sigma) * estimate + sigma * noise`, where the
    estimate is the model's own one-step prediction made (without gradient) from that same noise, as the second Euler
    step of sampling does; the loss still grades against the recorded frames."""
    train_world_model = _script_module()
    from tekken_diffusers import TekkenFlowMatchScheduler

    latents, batch, Spy, calls = _own_prediction_setup()

    def run(prob: float) -> tuple[list[dict], torch.Tensor]:
        calls.clear()
        config = train_world_model.TrainWorldModelConfig(
            dataset="x", preset="tiny", teacher_forcing_context_noise=0.0, self_target_prob=prob
        )
        loss, _, _ = train_world_model.training_step(
            Spy(), TekkenFlowMatchScheduler(), batch, config, torch.Generator().manual_seed(0), torch.device("cpu"),
            teacher_forcing=True,
        )  # fmt: skip
        return list(calls), loss

    (plain,), plain_loss = run(0.0)
    (first, graded), own_loss = run(1.0)
    assert not first["grad"] and graded["grad"]
    assert torch.all(first["sigmas"] == 1) and torch.equal(first["context_latents"], latents)
    sigmas = graded["sigmas"][..., None, None, None]
    assert torch.equal(graded["sigmas"], plain["sigmas"]) and torch.all(sigmas < 1)
    # the estimate started from the noise that also noises the graded targets
    torch.testing.assert_close(plain["sample"], (1 - sigmas) * latents + sigmas * first["sample"])
    # a fresh copy-path model's one-step estimate of frame t is the recorded frame t - 1 (context noise 0)
    shifted = (1 - sigmas[:, 1:]) * latents[:, :-1] + sigmas[:, 1:] * first["sample"][:, 1:]
    torch.testing.assert_close(graded["sample"][:, 1:], shifted, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(graded["sample"], plain["sample"])
    # graded against the recorded frames either way: the fresh model's output differs, so the losses do too
    assert float(own_loss.detach()) != pytest.approx(float(plain_loss.detach()))
    with pytest.raises(ValueError, match="self_target_prob must lie in"):
        train_world_model.TrainWorldModelConfig(dataset="x", preset="tiny", self_target_prob=-0.1)


# ---------------------------------------------------------------------------------------------------------------------
# Two players: a two-player dataset (record_atari.py --two-player) and model_overrides {num_players: 2}
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_player_dataset(tmp_path_factory) -> Path:
    """Two-player Boxing (both boxers driven by the recorder's policies) at 8×8, encoded with a random tiny DC-AE."""
    pytest.importorskip("pettingzoo")
    from tekken_diffusers import TekkenAutoencoderDC
    from tekken_diffusers.pipelines.random_pipeline import TINY_VAE_CONFIG

    root = tmp_path_factory.mktemp("wm2p")
    torch.manual_seed(0)
    TekkenAutoencoderDC(**TINY_VAE_CONFIG).save_pretrained(root / "vae")
    for command in (
        ["scripts/record_atari.py", "--out", root / "rounds", "--rounds", "4", "--max-frames", "40",
         "--size", "8", "8", "--val-fraction", "0.25", "--two-player", "--no-progress"],
        ["scripts/encode_latents.py", "--rounds", root / "rounds", "--vae", root / "vae", "--out", root / "latents",
         "--no-progress"],
    ):  # fmt: skip
        subprocess.run([sys.executable, *map(str, command)], cwd=ROOT, check=True, capture_output=True, env=ENV)
    return root / "latents"


@pytest.mark.slow
def test_two_player_run_saves_a_two_player_pipeline(two_player_dataset, tmp_path):
    from tekken_diffusers import TekkenWorldModelPipeline
    from tekken_diffusers.data import load_latent_info

    assert load_latent_info(two_player_dataset).has_actions_p2
    out = tmp_path / "2p"
    train(out, two_player_dataset, "--max_train_steps", "2", "--validation_steps", "2",
          "--model_overrides", '{"num_players": 2}', "--player_action_dropout", "0.5")  # fmt: skip
    assert sorted(losses(out)) == [1, 2]
    pipe = TekkenWorldModelPipeline.from_pretrained(out)
    assert pipe.num_players == 2
    assert (out / "validation" / "step-0000002.mp4").is_file()  # validation rolled out under both players' inputs
    session = pipe.start_session(context_latents=torch.zeros(1, 2, 4, 4, 4), num_inference_steps=1)
    assert session.step("f", "f").size == (8, 8)


def test_two_player_training_step_drops_each_players_inputs_on_its_own():
    train_world_model = _script_module()
    from tekken_diffusers import TekkenFlowMatchScheduler
    from tekken_diffusers.data import WindowBatch
    from tekken_diffusers.models import TekkenWorldModelTransformer

    batch = WindowBatch(
        latents=torch.randn(4, 6, 4, 4, 4),
        actions=torch.full((4, 6), 16, dtype=torch.int64),  # player 1 holds Right
        action_bits=torch.zeros(4, 6, 8).index_fill_(2, torch.tensor([3]), 1.0),
        valid=torch.ones(4, 6, dtype=torch.bool),
        round_ids=["a", "b", "c", "d"],
        starts=torch.zeros(4, dtype=torch.long),
        actions_p2=torch.full((4, 6), 8, dtype=torch.int64),  # player 2 holds button 1
    )
    seen = {}

    def spy(model):
        class Spy(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.module = model

            def forward(self, *args, **kwargs):
                seen.update(kwargs)
                return self.module(*args, **kwargs)

        return Spy()

    def step(model, **settings):
        config = train_world_model.TrainWorldModelConfig(dataset="x", preset="tiny", **settings)
        generator = torch.Generator().manual_seed(0)
        train_world_model.training_step(
            spy(model), TekkenFlowMatchScheduler(), batch, config, generator, torch.device("cpu"), False
        )
        return generator.get_state()

    one_player = TekkenWorldModelTransformer.from_preset("tiny")
    state = step(one_player, action_dropout=0.5, player_action_dropout=0.5)
    # one-player models: player 1's bits and one flag per sample, and no extra random draw for the players
    assert seen["actions"].shape == (4, 6, 8) and seen["action_mask"].shape == (4,)
    assert torch.equal(state, step(one_player, action_dropout=0.5, player_action_dropout=0.0))

    two_player = TekkenWorldModelTransformer.from_preset("tiny", num_players=2)
    step(two_player, action_dropout=0.0, player_action_dropout=0.0)
    assert seen["actions"].shape == (4, 6, 2, 8) and torch.equal(seen["action_mask"], torch.ones(4, 2, dtype=bool))
    assert seen["actions"][..., 1, 4].eq(1).all() and seen["actions"][..., 0, 3].eq(1).all()  # p2's 1, p1's Right
    step(two_player, action_dropout=0.0, player_action_dropout=1.0)
    assert not seen["action_mask"].any()
    step(two_player, action_dropout=1.0, player_action_dropout=0.0)
    assert not seen["action_mask"].any()  # a dropped sample loses both players' inputs


def test_a_two_player_model_needs_a_two_player_dataset(latent_dataset, tmp_path, capsys):
    train_world_model = _script_module()
    with pytest.raises(SystemExit) as raised:
        train_world_model.main(["--config", str(DEBUG), "--dataset", str(latent_dataset), "--output_dir",
                                str(tmp_path / "out"), "--model_overrides", '{"num_players": 2}'])  # fmt: skip
    assert raised.value.code == 2
    assert "a two-player model (num_players=2) needs player 2's inputs" in capsys.readouterr().err
