"""edgebench: a fleet benchmarking system for deep-learning frameworks and runtimes on edge boxes.

The layers and every module: docs/ARCHITECTURE.md.
"""
