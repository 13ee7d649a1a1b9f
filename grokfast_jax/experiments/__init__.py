"""Experiments built on the library (the library never imports them).

Each experiment lives in its own package (data, model, train) and registers
its subcommands on the `grokfast-jax` command line through `add_parsers`.
"""
