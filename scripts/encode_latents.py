#!/usr/bin/env python
"""Encode rounds into a latent dataset. Run with --help; the code lives in tekken_diffusers.cli.encode_latents."""

from tekken_diffusers.cli.encode_latents import main

if __name__ == "__main__":
    raise SystemExit(main())
