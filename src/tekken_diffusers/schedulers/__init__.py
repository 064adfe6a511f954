"""Schedulers: flow matching with a noise level per frame."""

from .scheduling_tekken_flow_match import TekkenFlowMatchScheduler
