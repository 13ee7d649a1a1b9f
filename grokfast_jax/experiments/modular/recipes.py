"""Named training recipes of the modular task, and how flags resolve on them.

A recipe is a dict of :class:`ModularConfig` overrides, all of them about the
training method (filter, optimizer, loss, constraints), never the task, the
model, the data split, the batch size (512) or the evaluation, which stay
the paper's. ``grokfast-jax modular --recipe NAME`` starts from it; every
flag given explicitly overrides it; results.json records the recipe name
(``settings.recipe``) and every resolved field.

Resolution (:func:`resolve`), for a run with filter ``f`` (``--filter``, or
the recipe's, or "ema" for ``modular``; each listed filter for
``compare``):

1. the paper's defaults for ``f`` (:data:`config.PAPER_DEFAULTS`);
2. the recipe's settings; when ``f`` is not the recipe's filter, its
   filter-specific ones (`FILTER_FIELDS`: alpha, lamb, window, IIR order and
   cutoff) are dropped, so the new filter keeps its paper values, while the
   rest (optimizer, learning rate, betas, weight decay, loss, ⊥Grad, weight
   norm) still applies;
3. the explicit flags.

The recipes, :data:`RECIPES` (each with a one-line summary and its
settings): paper-ema and paper-ma (the paper's Grokfast runs), lion-clip (the
Clip-to-Grok competitor, NiftyliuS/cliptogrok: Lion and its reference's
weight-norm bound, ``weight_norm_scope`` "all"), orthograd, stablemax,
weight-norm, iir, muon and egd (each alone, on the paper's baseline) and fastest
(what ``benchmarks/studies/fastest_grok.py`` found: Muon lr 2e-2 with the
Clip-to-Grok bound, no filter, no weight decay).
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional

from grokfast_jax.experiments.modular import config as config_lib

ModularConfig = config_lib.ModularConfig


class Recipe(NamedTuple):
  """One named recipe: a one-line summary and its config overrides."""

  summary: str
  settings: dict[str, Any]


_PAPER_EMA = {
  "filter": "ema",
  "alpha": 0.98,
  "lamb": 2.0,
  "weight_decay": 0.005,
}
_BASELINE = {"filter": "none", "weight_decay": 0.0}

RECIPES: dict[str, Recipe] = {
  "paper-ema": Recipe(
    "Grokfast-EMA with the paper's settings (Adam, coupled L2 0.005)",
    _PAPER_EMA,
  ),
  "paper-ma": Recipe(
    "Grokfast-MA with the paper's settings (Adam, coupled L2 0.01)",
    {"filter": "ma", "window_size": 100, "lamb": 5.0, "weight_decay": 0.01},
  ),
  "lion-clip": Recipe(
    "Clip to Grok: Lion (0.9, 0.97) lr 1e-3, rows clipped to 2.0, no wd",
    {
      "filter": "none",
      "optimizer": "lion",
      "lr": 1e-3,
      "beta1": 0.9,
      "beta2": 0.97,
      "weight_decay": 0.0,
      "max_weight_norm": 2.0,
      "weight_norm_axis": "row",
      "weight_norm_scope": "all",
    },
  ),
  "orthograd": Recipe(
    "⊥Grad alone (baseline Adam, no filter, no wd)",
    {**_BASELINE, "orthograd": True},
  ),
  "stablemax": Recipe(
    "StableMax cross-entropy alone (baseline)",
    {**_BASELINE, "loss": "stablemax"},
  ),
  "weight-norm": Recipe(
    "weight rows bounded by 2.0 alone (baseline Adam)",
    {**_BASELINE, "max_weight_norm": 2.0, "weight_norm_axis": "row"},
  ),
  "iir": Recipe(
    "Grokfast-IIR alone: Butterworth order 2, cutoff 0.0064, lamb 2",
    {
      "filter": "iir",
      "iir_order": 2,
      "iir_cutoff": 0.0064,
      "lamb": 2.0,
      "weight_decay": 0.005,
    },
  ),
  "egd": Recipe(
    "egalitarian gradient descent alone on the blocks' "
    "kernels (baseline Adam, no filter, no wd)",
    {**_BASELINE, "egd": True},
  ),
  "muon": Recipe(
    "Muon alone (AdamW fallback), no filter, no wd",
    {**_BASELINE, "optimizer": "muon"},
  ),
  # Picked by benchmarks/studies/fastest_grok.py (see benchmarks/README.md).
  "fastest": Recipe(
    "the search's winner (benchmarks/studies/fastest_grok.py): Muon lr "
    "2e-2, rows at norm 2.0 at init and clipped to 2.0, no filter, no wd",
    {
      **_BASELINE,
      "optimizer": "muon",
      "lr": 2e-2,
      "max_weight_norm": 2.0,
      "weight_norm_axis": "row",
      "weight_norm_scope": "all",
    },
  ),
}

# Fields a recipe may set: the training method only.
METHOD_FIELDS = (
  "filter",
  "alpha",
  "lamb",
  "window_size",
  "iir_order",
  "iir_cutoff",
  "weight_decay",
  "decoupled_wd",
  "optimizer",
  "lr",
  "beta1",
  "beta2",
  "eps",
  "warmup_steps",
  "orthograd",
  "egd",
  "loss",
  "max_weight_norm",
  "weight_norm_axis",
  "weight_norm_scope",
)
# A recipe's settings that belong to its filter (dropped for another one).
FILTER_FIELDS = ("alpha", "lamb", "window_size", "iir_order", "iir_cutoff")


def resolve(
  recipe: Optional[str] = None,
  filter: Optional[str] = None,
  *,
  default_filter: str = "ema",
  **overrides: Any,
) -> ModularConfig:
  """The config of `recipe` for `filter` with `overrides` on top.

  Args:
    recipe: a name in :data:`RECIPES`, or None (the paper's defaults).
    filter: the run's filter; None takes the recipe's, else
      `default_filter`.
    default_filter: the filter when neither gives one.
    **overrides: :class:`ModularConfig` fields; None values are ignored
      (flags not given).

  Returns:
    The config, with ``recipe`` set to the name.

  Raises:
    ValueError: an unknown recipe or a field out of its range.

  Example:
    >>> cfg = resolve("lion-clip", lr=3e-4)
    >>> cfg.optimizer, cfg.lr, cfg.max_weight_norm, cfg.recipe
    ('lion', 0.0003, 2.0, 'lion-clip')
  """
  if recipe is not None and recipe not in RECIPES:
    raise ValueError(f"recipe must be one of {sorted(RECIPES)}, got {recipe!r}")
  settings = dict(RECIPES[recipe].settings) if recipe else {}
  own = settings.pop("filter", None)
  f = filter or own or default_filter
  if own is not None and f != own:
    for name in FILTER_FIELDS:
      settings.pop(name, None)
  settings.update({k: v for k, v in overrides.items() if v is not None})
  return config_lib.paper_config(f, recipe=recipe, **settings)


# ------------------------------------------------------------ from flags

# Flags whose name is not the field's with dashes.
_FLAGS = {
  "beta1": "--betas",
  "beta2": "--betas",
  "iir_order": "--order",
  "iir_cutoff": "--cutoff",
}


def parse_betas(text: str) -> tuple[float, float]:
  """``"B1,B2"`` as two floats (the ``--betas`` flag)."""
  try:
    b1, b2 = (float(x) for x in text.split(","))
  except ValueError:
    raise ValueError(
      f"--betas must be two numbers B1,B2 in [0, 1), got {text!r}"
    ) from None
  return b1, b2


def config_from_given(
  given: Mapping[str, Any], filter: Optional[str], **fixed: Any
) -> ModularConfig:
  """The config of the flags a user gave (field -> value; ``betas`` a
  ``"B1,B2"`` text): the recipe's, then the flags (see :func:`resolve`).

  Raises:
    ValueError: a bad value, with the message naming its flag.
  """
  overrides = {
    k: v
    for k, v in given.items()
    if k not in ("recipe", "filter", "betas", "filters")
  }
  if given.get("betas") is not None:
    overrides["beta1"], overrides["beta2"] = parse_betas(given["betas"])
  overrides.update(fixed)
  try:
    return resolve(given.get("recipe"), filter, **overrides)
  except ValueError as e:
    text = str(e)
    field = text.split(" ", 1)[0]
    if field in ModularConfig.__dataclass_fields__:
      flag = _FLAGS.get(field, "--" + field.replace("_", "-"))
      text = flag + text[len(field) :]
    raise ValueError(text) from None
