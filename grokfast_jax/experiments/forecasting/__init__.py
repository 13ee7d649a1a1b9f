"""Long-term time-series forecasting with Batched Spectral Attention (BSA).

Base forecasters (DLinear, RLinear, PatchTST, a small iTransformer, FreTS,
Crossformer, TimesNet) are trained on shuffled sliding windows, then
fine-tuned with BSA on their input over consecutive, unshuffled windows, as
in Kang et al. (NeurIPS 2024).

Modules: `config` (the run's settings, also the command's flags), `data`
(CSV loaders, chronological split, window batches), `models` (the
forecasters), `training` (the base, BSA fine-tuning and control stages as
experiment-harness programs; evaluation and forecasts) and `task` (the
harness task of ``grokfast-jax forecast`` and :func:`task.run`, the whole
protocol for library use, e.g. ``benchmarks/studies/forecast_table.py``).
"""
