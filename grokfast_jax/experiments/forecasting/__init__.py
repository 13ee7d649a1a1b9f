"""Long-term time-series forecasting with Batched Spectral Attention (BSA).

Base forecasters (DLinear, a small iTransformer) are trained on shuffled
sliding windows, then fine-tuned with BSA on their input over consecutive,
unshuffled windows, as in Kang et al. (NeurIPS 2024).

Modules: `config` (run settings), `data` (ETT CSV loader, chronological split,
window batches), `models` (the forecasters), `train` (jitted loops, `run`).
"""
