"""Training and evaluation of forecasters with and without Batched Spectral Attention.

The loops are functional: a model is split into its graph, its ``nnx.Param``
state and the rest (the Spectral Attention EMA state), and one jitted
``lax.scan`` runs a whole epoch (or evaluation stream) with the windows
gathered on the fly from the normalized series. The jitted functions are
cached per model structure and optimizer settings, so seeds and datasets of
the same shapes reuse one compilation.

Entry point: :func:`run` (base training, BSA fine-tuning, test metrics of
both), used by ``benchmarks/ett_forecasting.py`` and by the ``forecast``
command (:mod:`.command`, registered through :func:`add_parsers`).
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from grokfast_jax.experiments.forecasting import data as fdata
from grokfast_jax.experiments.forecasting.config import ForecastConfig
from grokfast_jax.experiments.forecasting.models import (
    make_model, transfer_params)
from grokfast_jax.spectral_attention import reset_all


def gather(series: jax.Array, starts: jax.Array, lookback: int,
           horizon: int) -> tuple[jax.Array, jax.Array]:
  """Inputs (B, C, L) and targets (B, C, H) of the windows at `starts`."""
  x = series[starts[:, None] + jnp.arange(lookback)[None]]
  y = series[starts[:, None] + lookback + jnp.arange(horizon)[None]]
  return jnp.swapaxes(x, 1, 2), jnp.swapaxes(y, 1, 2)


def _forward(graphdef, params, rest, x):
  # copy=True: fresh Variables at the current trace level.
  model = nnx.merge(graphdef, params, rest, copy=True)
  pred = model(x)
  return pred, nnx.split(model, nnx.Param, ...)[2]


@functools.lru_cache(maxsize=None)
def base_optimizer(lr: float) -> optax.GradientTransformation:
  """Adam for base training (cached so jitted epochs are reused)."""
  return optax.adam(lr)


@functools.lru_cache(maxsize=None)
def finetune_optimizer(lr_spectral: float, lr_base: float,
                       weight_decay: float) -> optax.GradientTransformation:
  """Adam on the spectral parameters, AdamW on the rest, values clipped to 1.

  Parameters whose path contains ``"spectral"`` are the BSA's.
  """
  def labels(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "spectral" if any(
            getattr(k, "key", None) == "spectral" for k in path) else "base",
        params)
  return optax.chain(
      optax.clip(1.0),
      optax.multi_transform(
          {"spectral": optax.adam(lr_spectral),
           "base": optax.adamw(lr_base, weight_decay=weight_decay)}, labels))


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def train_epoch(graphdef, tx, lookback, horizon, params, rest, opt_state,
                series, batches):
  """One epoch: a scan of MSE steps over `batches` (n, B) of window starts.

  Returns:
    ``(params, rest, opt_state, mean_loss)``.
  """
  def loss_fn(p, r, x, y):
    pred, r = _forward(graphdef, p, r, x)
    return jnp.mean((pred - y) ** 2), r

  def body(carry, starts):
    p, r, o = carry
    x, y = gather(series, starts, lookback, horizon)
    (loss, r), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, r, x, y)
    updates, o = tx.update(grads, o, p)
    return (optax.apply_updates(p, updates), r, o), loss

  (params, rest, opt_state), losses = jax.lax.scan(
      body, (params, rest, opt_state), batches)
  return params, rest, opt_state, jnp.mean(losses)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def eval_stream(graphdef, lookback, horizon, params, rest, series, batches,
                mask):
  """Squared and absolute error sums over the masked samples of a stream.

  Returns:
    ``(sum_sq, sum_abs, n_values, rest)``.
  """
  def body(r, inputs):
    starts, m = inputs
    x, y = gather(series, starts, lookback, horizon)
    pred, r = _forward(graphdef, params, r, x)
    w = m[:, None, None].astype(jnp.float32)
    err = pred - y
    return r, (jnp.sum(w * err ** 2), jnp.sum(w * jnp.abs(err)),
               jnp.sum(w) * err.shape[1] * err.shape[2])

  rest, (sq, ab, n) = jax.lax.scan(body, rest, (batches, mask))
  return jnp.sum(sq), jnp.sum(ab), jnp.sum(n), rest


def _reset(graphdef, params, rest):
  model = nnx.merge(graphdef, params, rest)
  reset_all(model)
  return nnx.split(model, nnx.Param, ...)[2]


def evaluate(model: nnx.Module, fd: fdata.ForecastData, split: str, *,
             batch_size: int = 256, warm_up: Optional[bool] = None
             ) -> dict[str, float]:
  """Test-style MSE and MAE over a split's windows (normalized units).

  A model holding Spectral Attention is reset and then run over every earlier
  window of the series in time order (warm-up, errors not counted) before the
  split's windows, so its EMAs see the full history; the padding of the
  stream repeats its first window, which leaves the EMAs unchanged.

  Args:
    model: a forecaster.
    fd: the data.
    split: "train", "val" or "test".
    batch_size: samples per evaluation batch.
    warm_up: warm the state up; default: whether the model has
      SpectralState variables.

  Returns:
    ``{"mse": ..., "mae": ...}``. The model's state is left as after the run.
  """
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  starts = fd.starts[split]
  if warm_up is None:
    warm_up = len(jax.tree_util.tree_leaves(rest)) > 0
  if warm_up:
    rest = _reset(graphdef, params, rest)
  batches, mask = fdata.padded_stream(int(starts[0]), int(starts[-1]),
                                      batch_size, 0 if warm_up else None)
  sq, ab, n, rest = eval_stream(graphdef, fd.lookback, fd.horizon, params,
                                rest, jnp.asarray(fd.series),
                                jnp.asarray(batches), jnp.asarray(mask))
  nnx.update(model, rest)
  return {"mse": float(sq / n), "mae": float(ab / n)}


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def predict_stream(graphdef, lookback, horizon, params, rest, series,
                   batches):
  """Forecasts (n, B, C, H) of a stream of batches (n, B) of window starts.

  Returns:
    ``(predictions, rest)``.
  """
  def body(r, starts):
    x, _ = gather(series, starts, lookback, horizon)
    pred, r = _forward(graphdef, params, r, x)
    return r, pred

  rest, preds = jax.lax.scan(body, rest, batches)
  return preds, rest


def predict(model: nnx.Module, fd: fdata.ForecastData, starts, *,
            batch_size: int = 256, warm_up: Optional[bool] = None
            ) -> np.ndarray:
  """Forecasts at the given window starts, as :func:`evaluate` scores them.

  A model holding Spectral Attention is reset and warmed up over every
  window before the first requested one, then run over the windows from the
  first to the last requested start in time order; only the requested
  forecasts are kept (so the range between them should be short).

  Args:
    model: a forecaster.
    fd: the data.
    starts: window starts (any order).
    batch_size: samples per batch.
    warm_up: warm the state up; default: whether the model has
      SpectralState variables.

  Returns:
    (len(starts), C, H) float32 forecasts in normalized units.
  """
  starts = np.asarray(starts, np.int64)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  if warm_up is None:
    warm_up = len(jax.tree_util.tree_leaves(rest)) > 0
  if warm_up:
    rest = _reset(graphdef, params, rest)
  batches, mask = fdata.padded_stream(int(starts.min()), int(starts.max()),
                                      batch_size, 0 if warm_up else None)
  first = int(np.argmax(mask.any(axis=1)))
  series = jnp.asarray(fd.series)
  if first > 0:
    rest = eval_stream(graphdef, fd.lookback, fd.horizon, params, rest,
                       series, jnp.asarray(batches[:first]),
                       jnp.asarray(mask[:first]))[3]
  preds, rest = predict_stream(graphdef, fd.lookback, fd.horizon, params,
                               rest, series, jnp.asarray(batches[first:]))
  nnx.update(model, rest)
  preds = np.asarray(preds).reshape(-1, *preds.shape[2:])
  flat, keep = batches[first:].ravel(), mask[first:].ravel()
  where = {int(s): i for i, s in enumerate(flat) if keep[i]}
  return preds[[where[int(s)] for s in starts]]


def fit_base(model: nnx.Module, fd: fdata.ForecastData, cfg: ForecastConfig,
             log: Optional[list] = None,
             on_epoch: Optional[Callable[[dict], None]] = None
             ) -> nnx.Module:
  """Trains on shuffled windows with early stopping on the validation MSE.

  Args:
    model: the base forecaster (modified in place: it ends with the best
      validation parameters).
    fd: the data.
    cfg: settings (batch_size, lr, max_epochs, patience, seed).
    log: a list to append per-epoch dicts to.
    on_epoch: called with each epoch's dict (e.g. a progress bar).

  Returns:
    `model`.
  """
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = base_optimizer(cfg.lr)
  opt_state = tx.init(params)
  series = jnp.asarray(fd.series)
  rng = np.random.default_rng(cfg.seed)
  best, best_params, bad = float("inf"), params, 0
  for epoch in range(cfg.max_epochs):
    batches = fdata.shuffled_batches(fd.starts["train"], cfg.batch_size, rng)
    params, rest, opt_state, loss = train_epoch(
        graphdef, tx, fd.lookback, fd.horizon, params, rest, opt_state,
        series, jnp.asarray(batches))
    nnx.update(model, params)
    val = evaluate(model, fd, "val", batch_size=cfg.eval_batch_size)
    entry = {"stage": "base", "epoch": epoch, "train_mse": float(loss),
             "val_mse": val["mse"]}
    if log is not None:
      log.append(entry)
    if on_epoch is not None:
      on_epoch(entry)
    if val["mse"] < best:
      best, best_params, bad = val["mse"], params, 0
    else:
      bad += 1
      if bad >= cfg.patience:
        break
  nnx.update(model, best_params)
  return model


def finetune_spectral(model: nnx.Module, fd: fdata.ForecastData,
                      cfg: ForecastConfig, log: Optional[list] = None,
                      on_epoch: Optional[Callable[[dict], None]] = None,
                      stage: str = "finetune") -> nnx.Module:
  """Fine-tunes a model holding BSA on consecutive, unshuffled windows.

  (A model without BSA goes through the same protocol, all of its parameters
  at `ft_lr_base`: the control of the benchmark.)

  Every epoch starts from a reset EMA state and walks the training windows in
  time order in batches of `ft_batch_size` (the incomplete last batch is
  dropped); the state carries across batches. The parameters of the epoch
  with the best validation MSE are kept.

  Args:
    model: a forecaster built with ``spectral=...`` (modified in place).
    fd: the data.
    cfg: settings (ft_*).
    log: a list to append per-epoch dicts to.
    on_epoch: called with each epoch's dict (e.g. a progress bar).
    stage: the "stage" of those dicts.

  Returns:
    `model`.
  """
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = finetune_optimizer(cfg.ft_lr_spectral, cfg.ft_lr_base,
                          cfg.ft_weight_decay)
  opt_state = tx.init(params)
  series = jnp.asarray(fd.series)
  batches = jnp.asarray(
      fdata.consecutive_batches(fd.starts["train"], cfg.ft_batch_size))
  best, best_params = float("inf"), params
  for epoch in range(cfg.ft_epochs):
    rest = _reset(graphdef, params, rest)
    params, rest, opt_state, loss = train_epoch(
        graphdef, tx, fd.lookback, fd.horizon, params, rest, opt_state,
        series, batches)
    nnx.update(model, params, rest)
    val = evaluate(model, fd, "val", batch_size=cfg.eval_batch_size)
    entry = {"stage": stage, "epoch": epoch, "train_mse": float(loss),
             "val_mse": val["mse"]}
    if log is not None:
      log.append(entry)
    if on_epoch is not None:
      on_epoch(entry)
    if val["mse"] < best:
      best, best_params = val["mse"], params
  nnx.update(model, best_params)
  return model


def run(values: np.ndarray, cfg: ForecastConfig, *, control: bool = False,
        on_epoch: Optional[Callable[[dict], None]] = None,
        keep_models: bool = False) -> dict[str, Any]:
  """Base training, BSA fine-tuning and test metrics of both.

  Args:
    values: the raw (T, C) series (e.g. from :func:`data.load_ett_csv`).
    cfg: the settings.
    control: also fine-tune a copy of the base model WITHOUT BSA by the same
      protocol (consecutive batches, same optimizer, epochs and selection),
      to separate the effect of BSA from that of the extra training.
    on_epoch: called with each epoch's log dict (stages "base", "finetune"
      and "control").
    keep_models: also return the data and the trained models.

  Returns:
    A dict with "base" and "bsa" (and "control") test metrics
    ({"mse", "mae"}), their validation MSEs ("base_val", "bsa_val"),
    "metrics" (model -> {"val", "test"} -> {"mse", "mae"}), the per-epoch
    "log" and "seconds"; with `keep_models`, "data" (the
    :class:`data.ForecastData`) and "models" (model -> nnx.Module).
  """
  t0 = time.perf_counter()
  fd = fdata.make_forecast_data(values, cfg.lookback, cfg.horizon,
                                split=cfg.split, ratios=cfg.ratios,
                                max_rows=cfg.max_rows)
  log: list = []

  def scores(model):
    return {split: evaluate(model, fd, split, batch_size=cfg.eval_batch_size)
            for split in ("val", "test")}

  base = make_model(cfg.model, fd.channels, cfg.lookback, cfg.horizon,
                    seed=cfg.seed)
  fit_base(base, fd, cfg, log, on_epoch)
  metrics = {"base": scores(base)}
  bsa = make_model(cfg.model, fd.channels, cfg.lookback, cfg.horizon,
                   seed=cfg.seed, spectral=cfg.spectral_kwargs())
  transfer_params(base, bsa)
  finetune_spectral(bsa, fd, cfg, log, on_epoch)
  metrics["bsa"] = scores(bsa)
  models = {"base": base, "bsa": bsa}
  if control:
    ctl = make_model(cfg.model, fd.channels, cfg.lookback, cfg.horizon,
                     seed=cfg.seed)
    transfer_params(base, ctl)
    finetune_spectral(ctl, fd, cfg, log, on_epoch, stage="control")
    metrics["control"] = scores(ctl)
    models["control"] = ctl
  out = {name: m["test"] for name, m in metrics.items()}
  out["base_val"] = metrics["base"]["val"]["mse"]
  out["bsa_val"] = metrics["bsa"]["val"]["mse"]
  out["metrics"] = metrics
  out["log"] = log
  if keep_models:
    out["data"] = fd
    out["models"] = models
  out["seconds"] = time.perf_counter() - t0
  return out


def add_parsers(subparsers) -> None:
  """Adds the ``forecast`` subcommand (see :mod:`.command`)."""
  from grokfast_jax.experiments.forecasting import command
  command.add_parsers(subparsers)
