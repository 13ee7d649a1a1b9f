"""Micro-benchmarks: per-step timings of filters, sharded steps, BSA and the
JAX vs PyTorch training step."""
