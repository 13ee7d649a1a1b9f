"""QM9 polarizability with a scaled-initialization GNN (Grokfast paper, Sec. 4).

A two-layer NNConv network (PyTorch Geometric semantics, initial parameters
scaled by 3) regresses the isotropic polarizability `alpha` of 50 of the first
100 characterized QM9 molecules with MSE and AdamW (batch 32, 50,000 epochs),
testing on the other 50 every epoch. Grokfast-EMA (alpha 0.9, lamb 1.0, weight
decay 0.01) is compared with the baseline (weight decay 0) and with the weight
decay alone.

Modules: `config` (settings, whose fields are the flags, and the paper's
defaults), `data` (CSV loading and RDKit featurization; RDKit is the ``chem``
extra: ``pip install "grokfast_jax[chem]"``), `model` (padded graph batches,
NNConv, the network), `training` (the pure update, epoch and evaluation, and
the harness `Program` of a run) and `task` (the harness `TASK`: results,
summary line and the ``grokfast-jax qm9`` / ``qm9-compare`` comparison).
"""
