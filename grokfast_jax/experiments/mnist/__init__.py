"""MNIST with large initialization (Grokfast paper, Sec. 4; after Omnigrok).

A 784-200-200-10 ReLU MLP whose initial parameters are scaled by 8 is trained
with MSE on one-hot targets and AdamW on 1,000 MNIST images; with this init the
test accuracy rises long after the training accuracy saturates. Grokfast-EMA
(alpha 0.8, lamb 0.1, weight decay 2.0) shortens that delay.

Modules: `config`, `data` (IDX / npz, offline digits stand-in), `model`,
`training` (the run's harness `Program`) and `task` (the harness `TASK`).
"""
