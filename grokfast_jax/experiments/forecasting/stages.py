"""The training stages of a forecasting run as harness programs.

A forecasting run has three stages, each trained by
:func:`grokfast_jax.experiments.harness.train` (so each has its own
checkpoints and exact resume):

- ``"base"``: the base forecaster on shuffled windows (Adam), early stopping
  on the validation MSE. The shuffles are drawn up front from the seed, one
  per epoch, so the data order is a function of the seed and the epoch.
- ``"finetune"``: the base model with Batched Spectral Attention inserted on
  its input, fine-tuned on consecutive, unshuffled windows (the BSA logits by
  Adam, the base weights by AdamW, updates clipped); the BSA's carried EMA
  state is part of the training state and is reset at the start of every
  epoch; its validation warms the state up over all earlier windows.
- ``"control"``: the base model without BSA, fine-tuned by the same protocol
  (separates BSA from the extra training).

The state of a stage is ``{"params", "rest", "opt", "best_params",
"best_val", "bad"}``: the evaluation after each epoch keeps the parameters
of the best validation MSE and counts the epochs without improvement (the
base stage stops after `patience` of them).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from grokfast_jax.experiments import common
from grokfast_jax.experiments.forecasting import data as fdata
from grokfast_jax.experiments.forecasting import steps
from grokfast_jax.experiments.forecasting.config import ForecastConfig
from grokfast_jax.experiments.forecasting.models import make_model
from grokfast_jax.experiments.harness import Context, Program

STAGES = ("base", "finetune", "control")


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage of a run: what ``harness.train`` trains.

  Attributes:
    cfg: the run's settings.
    name: one of STAGES.
  """

  cfg: ForecastConfig
  name: str = "base"

  def __post_init__(self):
    if self.name not in STAGES:
      raise ValueError(f"stage must be one of {STAGES}, got {self.name!r}")

  def to_dict(self) -> dict[str, Any]:
    """The settings a checkpoint of the stage stores and a resume checks."""
    return {**common.to_json_safe(dataclasses.asdict(self.cfg)),
            "stage": self.name}


@dataclasses.dataclass(frozen=True)
class StageData:
  """The data of a stage.

  Attributes:
    fd: the normalized series and its windows.
    start: the Params to start from (the base model's best, for the
      fine-tuning stages), or None: the model's initialization.
  """

  fd: fdata.ForecastData
  start: Optional[Any] = None


def stage_model(stage: Stage, fd: fdata.ForecastData,
                start: Optional[Any] = None) -> nnx.Module:
  """The stage's model: with BSA for "finetune", loaded with `start`."""
  cfg = stage.cfg
  model = make_model(cfg.model, fd.channels, cfg.lookback, cfg.horizon,
                     seed=cfg.seed,
                     spectral=(cfg.spectral_kwargs()
                               if stage.name == "finetune" else None))
  if start is not None:
    nnx.update(model, start)
  return model


@functools.lru_cache(maxsize=64)
def _functions(spec: steps.Spec, lookback: int, horizon: int, shuffled: bool,
               warm_up: bool):
  """The stage's pure (train_epoch, evaluate), cached per model structure
  and optimizer so that seeds and datasets of the same shapes share one
  compilation."""
  step = functools.partial(steps.update, spec)

  def train_epoch(state, epoch, data):
    if shuffled:
      batches = data["perms"][epoch - 1]
    else:
      batches = data["batches"]
      state = {**state, "rest": steps.reset_rest(
          spec.graphdef, state["params"], state["rest"])}

    def body(s, starts):
      s, m = step(s, steps.gather(data["series"], starts, lookback, horizon))
      return s, m["train_mse"]

    train = {k: state[k] for k in ("params", "rest", "opt")}
    train, losses = jax.lax.scan(body, train, batches)
    return {**state, **train}, {"train_mse": jnp.mean(losses)}

  def evaluate(state, data):
    params, rest = state["params"], state["rest"]
    if warm_up:
      rest = steps.reset_rest(spec.graphdef, params, rest)
    sq, ab, n, _ = steps.stream_sums(spec.graphdef, lookback, horizon,
                                     params, rest, data["series"],
                                     data["val_batches"], data["val_mask"])
    mse, mae = sq / n, ab / n
    better = mse < state["best_val"]
    best = jax.tree.map(lambda new, old: jnp.where(better, new, old),
                        params, state["best_params"])
    state = {**state, "best_params": best,
             "best_val": jnp.where(better, mse, state["best_val"]),
             "bad": jnp.where(better, 0, state["bad"] + 1)}
    return state, {"val_mse": mse, "val_mae": mae,
                   "best_val_mse": state["best_val"], "bad": state["bad"]}

  return train_epoch, evaluate


def _entry(epoch_metrics: Mapping[str, Any],
           eval_metrics: Mapping[str, float]) -> dict[str, Any]:
  return {"train_loss": float(epoch_metrics["train_mse"][-1]),
          "val_loss": eval_metrics["val_mse"],
          "val_mae": eval_metrics["val_mae"],
          "best_val_loss": eval_metrics["best_val_mse"],
          "epochs_without_gain": int(eval_metrics["bad"])}


def build(stage: Stage, data: StageData, ctx: Context) -> Program:
  """The harness program of one stage (see the module docstring).

  Batches are consecutive windows whose order matters to BSA and are not
  split over devices: the task has ``mesh_ok=False`` and `ctx` is the
  one-device context.
  """
  cfg, fd = stage.cfg, data.fd
  model = stage_model(stage, fd, data.start)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  base = stage.name == "base"
  if base:
    tx = steps.base_optimizer(cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    order = {"perms": np.stack([
        fdata.shuffled_batches(fd.starts["train"], cfg.batch_size, rng)
        for _ in range(cfg.max_epochs)])}
    epochs, spe = cfg.max_epochs, order["perms"].shape[1]
  else:
    tx = steps.finetune_optimizer(cfg.ft_lr_spectral, cfg.ft_lr_base,
                                  cfg.ft_weight_decay)
    order = {"batches": fdata.consecutive_batches(fd.starts["train"],
                                                  cfg.ft_batch_size)}
    epochs, spe = cfg.ft_epochs, order["batches"].shape[0]
  warm_up = steps.has_state(rest)
  val_batches, val_mask = steps.eval_inputs(fd, "val", cfg.eval_batch_size,
                                            warm_up)
  # Fresh buffers: the harness donates the state, and `start` lives on.
  params = jax.tree.map(jnp.array, params)
  state = {"params": params, "rest": rest, "opt": tx.init(params),
           "best_params": jax.tree.map(jnp.array, params),
           "best_val": jnp.asarray(np.inf, jnp.float32),
           "bad": jnp.asarray(0, jnp.int32)}
  arrays = ctx.place_data({"series": jnp.asarray(fd.series),
                           "val_batches": jnp.asarray(val_batches),
                           "val_mask": jnp.asarray(val_mask),
                           **{k: jnp.asarray(v) for k, v in order.items()}})
  train_epoch, evaluate = _functions(steps.Spec(graphdef, tx), fd.lookback,
                                     fd.horizon, base, warm_up)
  patience = cfg.patience
  return Program(
      state=state, data=arrays, train_epoch=train_epoch, evaluate=evaluate,
      entry=_entry, total_epochs=epochs, steps_per_epoch=spe,
      should_stop=((lambda h: h[-1]["epochs_without_gain"] >= patience)
                   if base else None),
      info={"n_params": sum(int(np.size(x))
                            for x in jax.tree.leaves(params))})


def final_model(stage: Stage, fd: fdata.ForecastData,
                state: Mapping[str, Any]) -> nnx.Module:
  """The stage's model holding its best parameters."""
  model = stage_model(stage, fd)
  nnx.update(model, state["best_params"], state["rest"])
  return model


def summarize(stage: Stage, data: StageData,
              facts: Mapping[str, Any]) -> dict[str, Any]:
  """A stage's own results keys (the harness adds its own)."""
  history = facts["history"]
  return {"stage": stage.name, "epochs": len(history),
          "stopped_early": bool(facts["stopped_early"]),
          "n_params": facts["info"]["n_params"],
          "log": log_entries(stage.name, history)}


def log_entries(name: str, history: list) -> list[dict[str, Any]]:
  """The per-epoch log of a stage, as ``results.json`` keeps it."""
  return [{"stage": name, "epoch": h["epoch"] - 1,
           "train_mse": h["train_loss"], "val_mse": h["val_loss"]}
          for h in history]
