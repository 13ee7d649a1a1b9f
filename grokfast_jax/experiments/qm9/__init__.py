"""QM9 polarizability with a scaled-initialization GNN (Grokfast paper, Sec. 4).

A two-layer NNConv network (PyTorch Geometric semantics, initial parameters
scaled by 3) regresses the isotropic polarizability `alpha` of 50 of the first
100 characterized QM9 molecules with MSE and AdamW (batch 32, 50,000 epochs),
testing on the other 50 every epoch. Grokfast-EMA (alpha 0.9, lamb 1.0, weight
decay 0.01) is compared with the baseline (weight decay 0) and with the weight
decay alone.

Modules: `config`, `data` (CSV and RDKit featurization, the ``chem`` extra:
``pip install "grokfast_jax[chem]"``), `model`, `training` (the run's
harness `Program`) and `task` (the harness `TASK`).
"""
