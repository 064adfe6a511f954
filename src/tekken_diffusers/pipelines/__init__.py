"""Pipelines: `TekkenWorldModelPipeline` (batch generation), the rollout it samples with, interactive sessions, and
the stepping of many sessions in one forward pass (`step_sessions`, `SessionBatcher`)."""

from .batching import SessionBatcher, step_sessions
from .pipeline_tekken import TekkenWorldModelPipeline, TekkenWorldModelPipelineOutput
from .random_pipeline import build_random_pipeline
from .rollout import TekkenRollout, TekkenWorldModelSession
from .video_session import TekkenVideoWorldModelSession
