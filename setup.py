"""tekken-diffusers: action-conditioned game world models as Hugging Face diffusers pipelines."""

from setuptools import find_packages, setup

# torch is pinned exactly: on the project's machines a CPU build of 2.13.0 is on disk, and an open range makes pip
# download a multi-GB CUDA build instead.
INSTALL_REQUIRES = [
    "torch==2.13.0",
    "diffusers==0.42.1",
    "accelerate>=1.10,<2",
    "datasets>=3.0",
    "huggingface-hub>=0.30",
    "safetensors>=0.4",
    "numpy>=1.26",
    "pillow>=10",
    "tqdm>=4.66",
    "pyyaml>=6",
    "imageio>=2.34",
    "imageio-ffmpeg>=0.5",
]

EXTRAS = {
    "train": ["wandb>=0.17", "tensorboard>=2.15"],
    "demo": ["gradio>=5"],
    "atari": ["ale-py>=0.10", "pettingzoo>=1.24", "multi-agent-ale-py>=0.1.11", "pygame>=2.5"],
    "dev": ["pytest>=8", "hypothesis>=6.100", "ruff>=0.6", "selenium>=4.20"],
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})

setup(
    name="tekken-diffusers",
    version="0.1.0",
    description="Record, encode, train and play action-conditioned fighting-game world models with diffusers.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    package_dir={"": "src"},
    packages=find_packages("src"),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={
        # One rule: every command is `tekken_diffusers/cli/<module>.py` with `main(argv) -> int`; the README's command
        # table lists them.
        "console_scripts": [
            "tekken-record-atari=tekken_diffusers.cli.record_atari:main",
            "tekken-video-to-rounds=tekken_diffusers.cli.video_to_rounds:main",
            "tekken-preview-rounds=tekken_diffusers.cli.preview_rounds:main",
            "tekken-encode-latents=tekken_diffusers.cli.encode_latents:main",
            "tekken-train=tekken_diffusers.cli.train:main",
            "tekken-train-vae=tekken_diffusers.cli.train_vae:main",
            "tekken-infer-opponent=tekken_diffusers.cli.infer_opponent:main",
            "tekken-train-opponent=tekken_diffusers.cli.train_opponent:main",
            "tekken-evaluate=tekken_diffusers.cli.evaluate_world_model:main",
            "tekken-export=tekken_diffusers.cli.export_pipeline:main",
            "tekken-benchmark=tekken_diffusers.cli.benchmark_world_model:main",
            "tekken-benchmark-vae=tekken_diffusers.cli.benchmark_vae:main",
            "tekken-benchmark-dataloader=tekken_diffusers.cli.benchmark_dataloader:main",
            "tekken-benchmark-long-window=tekken_diffusers.cli.benchmark_long_window:main",
            "tekken-benchmark-app=tekken_diffusers.cli.benchmark_app:main",
            "tekken-generate=tekken_diffusers.cli.generate:main",
            "tekken-play=tekken_diffusers.cli.play:main",
            "tekken-presets=tekken_diffusers.cli.list_presets:main",
            "tekken-make-random-pipeline=tekken_diffusers.cli.make_random_pipeline:main",
            "tekken-convert-owl-wms=tekken_diffusers.cli.convert_owl_wms:main",
        ]
    },
)
