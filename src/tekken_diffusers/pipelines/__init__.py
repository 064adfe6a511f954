"""Pipelines: `TekkenWorldModelPipeline` (batch generation) and its interactive sessions."""

from .pipeline_tekken import TekkenWorldModelPipeline, TekkenWorldModelPipelineOutput, TekkenWorldModelSession
from .random_pipeline import build_random_pipeline
