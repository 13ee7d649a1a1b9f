"""Benchmarks and studies of grokfast_jax, run from the repository root as
``python -m benchmarks.<kind>.<name>`` (see ``benchmarks/README.md``)."""
