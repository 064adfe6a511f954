"""Play a world-model pipeline in the browser (`tekken-play`, `python pipelines/app.py`): the Gradio app of
`tekken_diffusers.demo` around `TekkenWorldModelPipeline.start_session`."""

from __future__ import annotations

import argparse

import torch

from .. import demo as play_page
from ..runtime import add_runtime_arguments, configure_threads, generation_thread_tuner, resolve_dtype
from . import setup_logging, transformer_width


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, load the pipeline and serve the page until interrupted."""
    parser = argparse.ArgumentParser(
        description="Serve a page where a person plays a world-model pipeline with the keyboard.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--pipeline", required=True, help="pipeline folder (or Hub id)")
    parser.add_argument("--rounds", required=True, help="folder of round .npz files to take starting contexts from")
    parser.add_argument("--context-frames", type=int, default=8, help="frames of context given to the model")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="denoising steps per frame, fewer = faster (default: the pipeline's default_inference_steps)",
    )
    parser.add_argument("--max-frames", type=int, default=2000, help="frames one session may generate")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1 = this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed of each new session")
    parser.add_argument(
        "--max-users",
        type=int,
        default=16,
        help="players whose games stream at once, stepped together in one batched forward pass per frame; the games "
        "of more players wait in the queue (never refused)",
    )
    parser.add_argument(
        "--batch-wait-ms",
        type=float,
        default=5.0,
        help="longest wait of a frame request for the other players' requests before its batch is stepped",
    )
    add_runtime_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging()
    if (args.steps is not None and args.steps < 1) or args.max_frames < 1 or args.context_frames < 1:
        parser.error("--steps, --max-frames and --context-frames must be >= 1")
    if args.max_users < 1 or args.batch_wait_ms < 0:
        parser.error(
            f"--max-users must be >= 1 and --batch-wait-ms >= 0, got {args.max_users} and {args.batch_wait_ms}"
        )
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    try:
        dtype = resolve_dtype(args.dtype, "cpu", model_width=transformer_width(args.pipeline))
    except ValueError as error:
        parser.error(f"--dtype {args.dtype}: {error}")
    try:
        # before the first heavy torch op starts the thread pool (the app's ticks then pick by timing)
        configure_threads(args.threads)
    except ValueError as error:
        parser.error(str(error))
    from ..pipelines import TekkenWorldModelPipeline

    pipe = TekkenWorldModelPipeline.from_pretrained(
        args.pipeline, dtype={"transformer": dtype, "default": torch.float32}
    )
    if pipe.temporal_compression_ratio > 1:
        parser.error(
            f"--pipeline {args.pipeline}: its VAE compresses time ({pipe.temporal_compression_ratio} frames per "
            "latent frame); the app plays one frame per input"
        )
    pipe.set_progress_bar_config(disable=True)
    contexts = play_page.ContextLibrary.from_folder(args.rounds, args.context_frames)
    # Looked up on the module at call time, so that tests can stand a fake app in for the Gradio one.
    demo = play_page.build_demo(
        pipe,
        contexts,
        num_inference_steps=args.steps,
        max_frames=args.max_frames,
        seed=args.seed,
        max_players=args.max_users,
        batch_wait=args.batch_wait_ms / 1000,
        # one thread or one per core for the batched ticks, whichever is faster now, unless the user chose
        thread_tuner=generation_thread_tuner(args.threads),
    )
    # The games' streams run `--max-users` at once (the stream event's own limit), the held keys' updates without a
    # limit; start/reset/download run two at a time. No bound on the queue: a player beyond the limit waits for a
    # turn rather than being refused ("Queue is full").
    demo.queue(default_concurrency_limit=2, max_size=None)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        head=play_page.KEYBOARD_JS,
        css=play_page.CSS,
        show_error=True,
        # Each stream holds a worker thread while it waits for its frame's batch: room for all of them and more.
        max_threads=max(40, 2 * args.max_users + 8),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
