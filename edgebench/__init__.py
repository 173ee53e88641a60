"""edgebench: a fleet benchmarking system for deep-learning frameworks and runtimes on edge boxes (docs/ARCHITECTURE.md)."""
