"""Pipelines: `TekkenWorldModelPipeline` (batch generation), the rollout it samples with, and interactive sessions."""

from .pipeline_tekken import TekkenWorldModelPipeline, TekkenWorldModelPipelineOutput
from .random_pipeline import build_random_pipeline
from .rollout import TekkenRollout, TekkenWorldModelSession
from .video_session import TekkenVideoWorldModelSession
