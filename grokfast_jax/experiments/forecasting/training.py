"""Training and scoring forecasters: a run's stages as harness programs.

A run has three stages, each trained by
:func:`grokfast_jax.experiments.harness.train` (so each has its own
checkpoints and exact resume):

- ``"base"``: the base forecaster on shuffled windows (Adam, optionally with
  an L2 term and a per-epoch rate decay), early stopping on the validation
  MSE (unless `patience` is None). The shuffles are drawn up front from the seed, one
  per epoch, so the data order is a function of the seed and the epoch.
- ``"finetune"``: the base model with Batched Spectral Attention inserted on
  its input, fine-tuned on consecutive, unshuffled windows (the BSA logits by
  Adam, the base weights by AdamW or Adam with an L2 term, the gradient
  clipped by value or norm, constant rates or a warm-up and cosine: the
  protocol's settings in :class:`ForecastConfig`); the BSA's carried EMA
  state is part of the training state and is reset at the start of every
  epoch; its validation warms the state up over all earlier windows.
- ``"control"``: the base model without BSA, fine-tuned by the same protocol
  (separates BSA from the extra training).

The state of a stage is ``{"params", "rest", "opt", "best_params",
"best_val", "bad"}``: the evaluation after each epoch keeps the parameters
of the best validation MSE and counts the epochs without improvement (the
base stage stops after `patience` of them).

A model is split into its graph, its ``nnx.Param`` state and the rest (the
BSA's EMA state, empty without BSA), the trees that the pure :func:`update`
and :func:`stream_sums` take; windows are gathered from the normalized
(T, C) series by their start index. :func:`evaluate` and :func:`predict`
score or forecast a split with a built model (the results and the plot).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Hashable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from grokfast_jax.experiments.forecasting import data as fdata
from grokfast_jax.experiments.forecasting.config import ForecastConfig
from grokfast_jax.experiments.forecasting.models import make_model
from grokfast_jax.experiments.harness import Context, Program, settings_dict
from grokfast_jax.spectral_attention import reset_all

STAGES = ("base", "finetune", "control")


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage of a run (what ``harness.train`` trains): the run's settings
  `cfg` and the stage's `name`, one of STAGES."""

  cfg: ForecastConfig
  name: str = "base"

  def __post_init__(self):
    if self.name not in STAGES:
      raise ValueError(f"stage must be one of {STAGES}, got {self.name!r}")

  def to_dict(self) -> dict[str, Any]:
    """The settings a checkpoint of the stage stores and a resume checks."""
    return {**settings_dict(self.cfg), "stage": self.name}


@dataclasses.dataclass(frozen=True)
class StageData:
  """The data of a stage: the windows `fd` and the Params to `start` from
  (the base model's best, for the fine-tuning stages; None: the model's
  initialization)."""

  fd: fdata.ForecastData
  start: Optional[Any] = None


def gather(
  series: jax.Array, starts: jax.Array, lookback: int, horizon: int
) -> tuple[jax.Array, jax.Array]:
  """Inputs (B, C, L) and targets (B, C, H) of the windows at `starts`."""
  x = series[starts[:, None] + jnp.arange(lookback)[None]]
  y = series[starts[:, None] + lookback + jnp.arange(horizon)[None]]
  return jnp.swapaxes(x, 1, 2), jnp.swapaxes(y, 1, 2)


def forward(
  graphdef: nnx.GraphDef, params: Any, rest: Any, x: jax.Array
) -> tuple[jax.Array, Any]:
  """Forecasts of windows `x` and the model's rest state after the call."""
  # copy=True: fresh Variables at the current trace level.
  model = nnx.merge(graphdef, params, rest, copy=True)
  pred = model(x)
  return pred, nnx.split(model, nnx.Param, ...)[2]


def reset_rest(graphdef: nnx.GraphDef, params: Any, rest: Any) -> Any:
  """The rest state with every Spectral Attention EMA forgotten (`rest`
  itself is left as it is)."""
  model = nnx.merge(graphdef, params, rest, copy=True)
  reset_all(model)
  return nnx.split(model, nnx.Param, ...)[2]


def has_state(rest: Any) -> bool:
  """Whether a model's rest state holds anything (SpectralState EMAs)."""
  return len(jax.tree_util.tree_leaves(rest)) > 0


@functools.cache
def base_optimizer(
  lr: float,
  weight_decay: float = 0.0,
  lr_decay: float = 1.0,
  steps_per_epoch: int = 1,
) -> optax.GradientTransformation:
  """Adam for base training, its rate times `lr_decay` after every epoch of
  `steps_per_epoch` updates, with an L2 term `weight_decay` added to the
  gradient (torch Adam's ``weight_decay``); cached so that jitted epochs are
  reused."""
  if weight_decay == 0 and lr_decay == 1:
    return optax.adam(lr)
  rate = optax.exponential_decay(lr, steps_per_epoch, lr_decay, staircase=True)
  return optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(rate))


def _group(path) -> str:
  """The fine-tuning group of a parameter: "alpha" (a BSA smoothing-factor
  logit), "spectral" (a BSA mixing logit) or "base"."""
  keys = [getattr(k, "key", None) for k in path]
  if "spectral" not in keys:
    return "base"
  return "alpha" if "alpha_logits" in keys else "spectral"


@functools.cache
def finetune_optimizer(
  lr_spectral: float,
  lr_base: float,
  weight_decay: float,
  *,
  lr_alpha: Optional[float] = None,
  decoupled_wd: bool = True,
  schedule: str = "constant",
  warmup_steps: int = 0,
  total_steps: int = 1,
  clip: str = "value",
) -> optax.GradientTransformation:
  """Fine-tuning: Adam on the BSA mixing logits (`lr_spectral`) and
  smoothing-factor logits (`lr_alpha`, default `lr_spectral`), and on the
  base parameters at `lr_base` with weight decay (AdamW's decoupled decay, or
  an L2 term before Adam); the gradient clipped at 1 by value or global norm.
  With ``schedule="cosine"`` every rate warms up linearly from 0 over
  `warmup_steps` and then follows a cosine to 0 at `total_steps`."""

  def rate(peak):
    if schedule == "constant":
      return peak
    return optax.warmup_cosine_decay_schedule(
      0.0, peak, warmup_steps, max(total_steps, warmup_steps + 1)
    )

  def labels(params):
    return jax.tree_util.tree_map_with_path(lambda p, _: _group(p), params)

  if decoupled_wd:
    base = optax.adamw(rate(lr_base), weight_decay=weight_decay)
  else:
    base = optax.chain(
      optax.add_decayed_weights(weight_decay), optax.adam(rate(lr_base))
    )
  groups: dict[Hashable, optax.GradientTransformation] = {
    "spectral": optax.adam(rate(lr_spectral)),
    "base": base,
    "alpha": optax.adam(rate(lr_spectral if lr_alpha is None else lr_alpha)),
  }
  return optax.chain(
    optax.clip(1.0) if clip == "value" else optax.clip_by_global_norm(1.0),
    optax.multi_transform(groups, labels),
  )


def update(
  graphdef: nnx.GraphDef,
  tx: optax.GradientTransformation,
  state: dict,
  batch: tuple[jax.Array, jax.Array],
) -> tuple[dict, dict[str, jax.Array]]:
  """One MSE step on a batch of windows (pure: bind `graphdef` and `tx` for
  a function of ``(state, batch)``).

  Args:
    graphdef: the model's graph (``nnx.split(model, nnx.Param, ...)[0]``).
    tx: the optimizer (:func:`base_optimizer`, :func:`finetune_optimizer`).
    state: ``{"params", "rest", "opt"}`` (other keys pass through).
    batch: inputs (B, C, L) and targets (B, C, H), in time order when the
      model holds BSA (its EMA state carries from sample to sample).

  Returns:
    ``(state, {"train_mse": loss})``.
  """
  x, y = batch

  def loss_fn(p, r):
    pred, r = forward(graphdef, p, r, x)
    return jnp.mean((pred - y) ** 2), r

  params = state["params"]
  (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(
    params, state["rest"]
  )
  updates, opt = tx.update(grads, state["opt"], params)
  return (
    {
      **state,
      "params": optax.apply_updates(params, updates),
      "rest": rest,
      "opt": opt,
    },
    {"train_mse": loss},
  )


def stream_sums(
  graphdef: nnx.GraphDef,
  lookback: int,
  horizon: int,
  params: Any,
  rest: Any,
  series: jax.Array,
  batches: jax.Array,
  mask: jax.Array,
  keep_preds: bool = False,
) -> tuple[Any, ...]:
  """Squared and absolute error sums over the masked samples of a stream.

  Args:
    graphdef, params, rest: the model.
    lookback, horizon: the window.
    series: (T, C) normalized series.
    batches: (n, B) window starts, in time order.
    mask: (n, B) bool, the samples that count.
    keep_preds: also return the forecasts.

  Returns:
    ``(sum_sq, sum_abs, n_values, rest, preds)``: `preds` the (n, B, C, H)
    forecasts with `keep_preds`, else None.
  """

  def body(r, inputs):
    starts, m = inputs
    x, y = gather(series, starts, lookback, horizon)
    pred, r = forward(graphdef, params, r, x)
    w = m[:, None, None].astype(jnp.float32)
    err = pred - y
    return r, (
      (
        jnp.sum(w * err**2),
        jnp.sum(w * jnp.abs(err)),
        jnp.sum(w) * err.shape[1] * err.shape[2],
      ),
      pred if keep_preds else None,
    )

  rest, ((sq, ab, n), preds) = jax.lax.scan(body, rest, (batches, mask))
  return jnp.sum(sq), jnp.sum(ab), jnp.sum(n), rest, preds


eval_stream = jax.jit(stream_sums, static_argnums=(0, 1, 2, 8))


def stage_model(
  stage: Stage, fd: fdata.ForecastData, *states: Any
) -> nnx.Module:
  """The stage's model (with BSA for "finetune"), updated with each of
  `states` that is not None (the Params to start from, or a trained stage's
  ``state["best_params"], state["rest"]``)."""
  cfg = stage.cfg
  model = make_model(
    cfg.model,
    fd.channels,
    cfg.lookback,
    cfg.horizon,
    seed=cfg.seed,
    spectral=(cfg.spectral_kwargs() if stage.name == "finetune" else None),
  )
  for state in states:
    if state is not None:
      nnx.update(model, state)
  return model


@functools.lru_cache(maxsize=64)
def _functions(
  graphdef, tx, lookback: int, horizon: int, shuffled: bool, warm_up: bool
):
  """The stage's pure (train_epoch, evaluate), cached so that runs of the
  same model structure and optimizer share one compilation."""
  step = functools.partial(update, graphdef, tx)

  def train_epoch(state, epoch, data):
    if shuffled:
      batches = data["perms"][epoch - 1]
    else:
      batches = data["batches"]
      state = {
        **state,
        "rest": reset_rest(graphdef, state["params"], state["rest"]),
      }

    def body(s, starts):
      s, m = step(s, gather(data["series"], starts, lookback, horizon))
      return s, m["train_mse"]

    train = {k: state[k] for k in ("params", "rest", "opt")}
    train, losses = jax.lax.scan(body, train, batches)
    return {**state, **train}, {"train_mse": jnp.mean(losses)}

  def evaluate(state, data):
    params, rest = state["params"], state["rest"]
    if warm_up:
      rest = reset_rest(graphdef, params, rest)
    sq, ab, n, _, _ = stream_sums(
      graphdef,
      lookback,
      horizon,
      params,
      rest,
      data["series"],
      data["val_batches"],
      data["val_mask"],
    )
    mse, mae = sq / n, ab / n
    better = mse < state["best_val"]
    best = jax.tree.map(
      lambda new, old: jnp.where(better, new, old), params, state["best_params"]
    )
    state = {
      **state,
      "best_params": best,
      "best_val": jnp.where(better, mse, state["best_val"]),
      "bad": jnp.where(better, 0, state["bad"] + 1),
    }
    return state, {
      "val_mse": mse,
      "val_mae": mae,
      "best_val_mse": state["best_val"],
      "bad": state["bad"],
    }

  return train_epoch, evaluate


def _entry(
  epoch_metrics: Mapping[str, Any], eval_metrics: Mapping[str, float]
) -> dict[str, Any]:
  return {
    "train_loss": float(epoch_metrics["train_mse"][-1]),
    "val_loss": eval_metrics["val_mse"],
    "val_mae": eval_metrics["val_mae"],
    "best_val_loss": eval_metrics["best_val_mse"],
    "epochs_without_gain": int(eval_metrics["bad"]),
  }


def build(stage: Stage, data: StageData, ctx: Context) -> Program:
  """The harness program of one stage (see the module docstring); `ctx` is
  the one-device context (the task has ``mesh_ok=False``)."""
  cfg, fd = stage.cfg, data.fd
  model = stage_model(stage, fd, data.start)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  base = stage.name == "base"
  if base:
    rng = np.random.default_rng(cfg.seed)
    order = {
      "perms": np.stack(
        [
          fdata.shuffled_batches(fd.starts["train"], cfg.batch_size, rng)
          for _ in range(cfg.max_epochs)
        ]
      )
    }
    epochs, spe = cfg.max_epochs, order["perms"].shape[1]
    tx = base_optimizer(cfg.lr, cfg.weight_decay, cfg.lr_decay, spe)
  else:
    order = {
      "batches": fdata.consecutive_batches(
        fd.starts["train"], cfg.ft_batch_size
      )
    }
    epochs, spe = cfg.ft_epochs, order["batches"].shape[0]
    tx = finetune_optimizer(
      cfg.ft_lr_spectral,
      cfg.ft_lr_base,
      cfg.ft_weight_decay,
      lr_alpha=cfg.ft_lr_alpha,
      decoupled_wd=cfg.ft_decoupled_wd,
      schedule=cfg.ft_schedule,
      warmup_steps=-(-cfg.ft_warmup_samples // cfg.ft_batch_size),
      total_steps=epochs * spe,
      clip=cfg.ft_clip,
    )
  warm_up = has_state(rest)
  val = fd.starts["val"]
  val_batches, val_mask = fdata.padded_stream(
    int(val[0]), int(val[-1]), cfg.eval_batch_size, 0 if warm_up else None
  )
  # Fresh buffers: the harness donates the state, and `start` lives on.
  params = jax.tree.map(jnp.array, params)
  state = {
    "params": params,
    "rest": rest,
    "opt": tx.init(params),
    "best_params": jax.tree.map(jnp.array, params),
    "best_val": jnp.asarray(np.inf, jnp.float32),
    "bad": jnp.asarray(0, jnp.int32),
  }
  arrays = ctx.place_data(
    {
      "series": jnp.asarray(fd.series),
      "val_batches": jnp.asarray(val_batches),
      "val_mask": jnp.asarray(val_mask),
      **{k: jnp.asarray(v) for k, v in order.items()},
    }
  )
  train_epoch, evaluate = _functions(
    graphdef, tx, fd.lookback, fd.horizon, base, warm_up
  )
  patience = cfg.patience
  return Program(
    state=state,
    data=arrays,
    train_epoch=train_epoch,
    evaluate=evaluate,
    entry=_entry,
    total_epochs=epochs,
    steps_per_epoch=spe,
    should_stop=(
      (lambda h: h[-1]["epochs_without_gain"] >= patience)
      if base and patience is not None
      else None
    ),
    info={"n_params": sum(int(np.size(x)) for x in jax.tree.leaves(params))},
  )


def summarize(
  stage: Stage, data: StageData, facts: Mapping[str, Any]
) -> dict[str, Any]:
  """A stage's own results keys (the harness adds its own), "log" the
  per-epoch entries the command's results.json keeps."""
  history = facts["history"]
  return {
    "stage": stage.name,
    "epochs": len(history),
    "stopped_early": bool(facts["stopped_early"]),
    "n_params": facts["info"]["n_params"],
    "log": [
      {
        "stage": stage.name,
        "epoch": h["epoch"] - 1,
        "train_mse": h["train_loss"],
        "val_mse": h["val_loss"],
      }
      for h in history
    ],
  }


def _stream(
  model: nnx.Module,
  fd: fdata.ForecastData,
  first: int,
  last: int,
  batch_size: int,
  warm_up: Optional[bool],
):
  """``((graphdef, lookback, horizon, params, rest, series), batches,
  mask)``: the stream of windows `first`..`last`, begun at the series' first
  window and the rest state reset when warming up (default: when the model
  has state)."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  if warm_up is None:
    warm_up = has_state(rest)
  if warm_up:
    rest = reset_rest(graphdef, params, rest)
  batches, mask = fdata.padded_stream(
    first, last, batch_size, 0 if warm_up else None
  )
  return (
    (graphdef, fd.lookback, fd.horizon, params, rest, jnp.asarray(fd.series)),
    batches,
    mask,
  )


def evaluate(
  model: nnx.Module,
  fd: fdata.ForecastData,
  split: str,
  *,
  batch_size: int = 256,
  warm_up: Optional[bool] = None,
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
  starts = fd.starts[split]
  args, batches, mask = _stream(
    model, fd, int(starts[0]), int(starts[-1]), batch_size, warm_up
  )
  sq, ab, n, rest, _ = eval_stream(
    *args, jnp.asarray(batches), jnp.asarray(mask)
  )
  nnx.update(model, rest)
  return {"mse": float(sq / n), "mae": float(ab / n)}


def predict(
  model: nnx.Module,
  fd: fdata.ForecastData,
  starts: Sequence[int],
  *,
  batch_size: int = 256,
  warm_up: Optional[bool] = None,
) -> np.ndarray:
  """Forecasts at the given window starts, as :func:`evaluate` scores them.

  A model holding Spectral Attention is reset and warmed up over every
  window before the first requested one, then run over the windows from the
  first to the last requested start in time order; only the requested
  forecasts are kept (so the range between them should be short).

  Args:
    model, fd, batch_size, warm_up: as :func:`evaluate`.
    starts: window starts (any order).

  Returns:
    (len(starts), C, H) float32 forecasts in normalized units.
  """
  at = np.asarray(starts, np.int64)
  (*model_args, rest, series), batches, mask = _stream(
    model, fd, int(at.min()), int(at.max()), batch_size, warm_up
  )
  first = int(np.argmax(mask.any(axis=1)))  # batches before: warm-up only
  if first > 0:
    rest = eval_stream(
      *model_args,
      rest,
      series,
      jnp.asarray(batches[:first]),
      jnp.asarray(mask[:first]),
    )[3]
  *_, rest, preds = eval_stream(
    *model_args,
    rest,
    series,
    jnp.asarray(batches[first:]),
    jnp.asarray(mask[first:]),
    True,
  )
  nnx.update(model, rest)
  preds = np.asarray(preds).reshape(-1, *preds.shape[2:])
  # The stream is consecutive and ends at the last requested start.
  return preds[len(preds) - 1 - (at.max() - at)]
