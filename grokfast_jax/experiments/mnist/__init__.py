"""MNIST with large initialization (Grokfast paper, Sec. 4; after Omnigrok).

A 784-200-200-10 ReLU MLP whose initial parameters are scaled by 8 is trained
with MSE on one-hot targets and AdamW on 1,000 MNIST images; with this init the
test accuracy rises long after the training accuracy saturates. Grokfast-EMA
(alpha 0.8, lamb 0.1, weight decay 2.0) shortens that delay.

Modules: `config` (settings, whose fields are the flags, and the paper's
defaults), `data` (IDX / npz loading, offline digits stand-in), `model` (the
MLP), `training` (the pure update, epoch and evaluation, and the harness
`Program` of a run) and `task` (the harness `TASK`: results, summary line and
the ``grokfast-jax mnist`` / ``mnist-compare`` comparison).
"""
