"""The algorithmic (modular arithmetic) grokking task of the Grokfast paper.

A small transformer learns ``x op y mod p`` from half of all equations and
groks (validation accuracy jumps to ~100%) long after fitting the training
half; Grokfast's gradient filters shorten that delay.

Modules: `config`, `recipes`, `data`, `model`, `optimizers` and `task` (the
harness `TASK` of ``grokfast-jax modular`` / ``compare``).
"""
