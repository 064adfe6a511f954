"""Helpers the benchmarks share (what machine the numbers come from, its matmul ceilings, interleaved timing, a
neighbour process that keeps the CPU busy), and the world model's measurements (`benchmarking.world_model`, the parts
of `tekken-benchmark`)."""

from .machine import NeighbourLoad, cpu_model_name, machine_info, matmul_ceilings
from .timing import interleaved_times, markdown_table, percentile, timed

__all__ = [
    "NeighbourLoad",
    "cpu_model_name",
    "interleaved_times",
    "machine_info",
    "markdown_table",
    "matmul_ceilings",
    "percentile",
    "timed",
]
