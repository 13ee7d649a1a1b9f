"""The Grokfast settings the paper tasks (MNIST, IMDb, QM9) share.

Validation and defaults of the filter knobs (:func:`check`,
:func:`check_optimizer_settings`, :func:`config_with_defaults`), the names
and settings dicts built from them (:class:`FilterSettingsMixin`), the
filter in front of AdamW (:func:`grokfast_filter`, :func:`filtered_adamw`),
and the carried :class:`TrainState`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple, Optional, Sequence

if TYPE_CHECKING:
  import jax
  import optax
  from flax import nnx


GROKFAST_FILTERS = ("none", "ema", "ma")

# The filter knobs each filter leaves unused (dropped from settings dicts).
_UNUSED_KNOBS = {"none": ("alpha", "lamb", "window_size"),
                 "ema": ("window_size",), "ma": ("alpha",)}
# The knobs each filter takes, in the order of :func:`filter_knobs`.
_KNOB_NAMES = {"none": (), "ema": ("alpha", "lamb"),
               "ma": ("window_size", "lamb")}


def check(name: str, value: Any, ok: bool, allowed: str) -> None:
  """Raises a ValueError naming `name`, `allowed` and `value` unless `ok`.

  Args:
    name: the setting's name.
    value: its value.
    ok: whether the value is allowed.
    allowed: what is allowed, e.g. ">= 1".

  Raises:
    ValueError: ``"<name> must be <allowed>, got <value>"`` when not `ok`.

  Example:
    >>> check("lr", 0.1, True, "> 0")
    >>> check("lr", 0, False, "> 0")
    Traceback (most recent call last):
    ...
    ValueError: lr must be > 0, got 0
  """
  if not ok:
    raise ValueError(f"{name} must be {allowed}, got {value}")


def check_filter(filter: str, filters: Sequence[str]) -> None:
  """Raises a ValueError unless `filter` is one of `filters`.

  Example:
    >>> check_filter("ema", GROKFAST_FILTERS)
    >>> check_filter("sma", GROKFAST_FILTERS)
    Traceback (most recent call last):
    ...
    ValueError: filter must be one of ('none', 'ema', 'ma'), got 'sma'
  """
  if filter not in filters:
    raise ValueError(f"filter must be one of {filters}, got {filter!r}")


def check_optimizer_settings(cfg: Any, filters: Sequence[str], *,
                             finite: bool = False) -> None:
  """Validates a config's filter, alpha, lamb, window_size, weight_decay and
  lr, in this order.

  Args:
    cfg: any object with those attributes.
    filters: the allowed filters.
    finite: also reject infinite lamb, weight_decay and lr (the messages then
      say "... and finite").

  Raises:
    ValueError: naming the first setting out of its allowed range.
  """
  check_filter(cfg.filter, filters)
  if not 0.0 <= cfg.alpha < 1.0:
    raise ValueError(f"alpha must be in [0, 1), got {cfg.alpha}")
  suffix = " and finite" if finite else ""

  def bounded(value) -> bool:
    return value < math.inf if finite else True

  check("lamb", cfg.lamb, cfg.lamb >= 0 and bounded(cfg.lamb), ">= 0" + suffix)
  check("window_size", cfg.window_size, cfg.window_size >= 1, ">= 1")
  check("weight_decay", cfg.weight_decay,
        cfg.weight_decay >= 0 and bounded(cfg.weight_decay), ">= 0" + suffix)
  check("lr", cfg.lr, cfg.lr > 0 and bounded(cfg.lr), "> 0" + suffix)


def config_with_defaults(cls: type, filters: Sequence[str],
                         defaults: Mapping[str, Mapping[str, Any]],
                         filter: str, overrides: Mapping[str, Any]) -> Any:
  """``cls(filter=filter, **defaults[filter])`` updated by `overrides`.

  Overrides set to None are ignored, so parsed command-line options with no
  value given fall back to the default for the chosen filter.

  Args:
    cls: the config class (it validates itself).
    filters: the allowed filters.
    defaults: filter -> default settings.
    filter: the chosen filter.
    overrides: settings to use instead of the defaults (None: not given).

  Returns:
    The config.

  Raises:
    ValueError: unknown filter (or whatever `cls` raises).

  Example:
    >>> import collections
    >>> Cfg = collections.namedtuple("Cfg", "filter lamb seed")
    >>> config_with_defaults(Cfg, ("ema",), {"ema": {"lamb": 2.0, "seed": 0}},
    ...                      "ema", {"lamb": None, "seed": 3})
    Cfg(filter='ema', lamb=2.0, seed=3)
  """
  check_filter(filter, filters)
  fields = dict(defaults[filter])
  fields.update({k: v for k, v in overrides.items() if v is not None})
  return cls(filter=filter, **fields)


class FilterSettingsMixin:
  """Names and dict of a config dataclass with the fields filter, alpha, lamb,
  window_size and weight_decay (the paper tasks' configs derive from it).

  Example:
    >>> @dataclasses.dataclass(frozen=True)
    ... class Cfg(FilterSettingsMixin):
    ...   filter: str = "ma"
    ...   alpha: float = 0.9
    ...   lamb: float = 5.0
    ...   window_size: int = 100
    ...   weight_decay: float = 0.01
    >>> Cfg().run_name, Cfg().label
    ('grokfast-ma', 'window 100, lamb 5, wd 0.01')
    >>> Cfg(filter="none").filter_settings_dict(seed=1)
    {'filter': 'none', 'weight_decay': 0.01, 'seed': 1}
  """

  @property
  def run_name(self) -> str:
    """A short label: "baseline", "grokfast-ema" or "grokfast-ma"."""
    return "baseline" if self.filter == "none" else f"grokfast-{self.filter}"

  @property
  def label(self) -> str:
    """The settings that tell runs apart, e.g. "alpha 0.8, lamb 0.1, wd 2"."""
    knobs = {"none": [],
             "ema": [f"alpha {self.alpha:g}", f"lamb {self.lamb:g}"],
             "ma": [f"window {self.window_size}", f"lamb {self.lamb:g}"]}
    return ", ".join(knobs[self.filter] + [f"wd {self.weight_decay:g}"])

  def filter_settings_dict(self, **extra: Any) -> dict[str, Any]:
    """The dataclass's fields as a dict without the filter knobs its filter
    does not use, updated by `extra` (replaced keys keep their place)."""
    d = dataclasses.asdict(self)
    for name in _UNUSED_KNOBS[self.filter]:
      del d[name]
    d.update(extra)
    return d


def filter_knobs(cfg: Any) -> tuple:
  """The knobs `cfg.filter` takes: () for "none", (alpha, lamb) for "ema",
  (window_size, lamb) for "ma" (the `knobs` of :func:`filtered_adamw`)."""
  return tuple(getattr(cfg, name) for name in _KNOB_NAMES[cfg.filter])


def grokfast_filter(filter: str, *, alpha: Any = None, lamb: Any = None,
                    window_size: Optional[int] = None,
                    ) -> Optional["optax.GradientTransformation"]:
  """The Grokfast gradient filter `filter` names, or None for "none".

  Args:
    filter: "none", "ema" or "ma".
    alpha: Grokfast-EMA momentum (used by "ema"; may be traced).
    lamb: Grokfast amplification (used by "ema" and "ma"; may be traced).
    window_size: Grokfast-MA window (used by "ma"; static).

  Returns:
    ``grokfast_ema(alpha, lamb)``, ``grokfast_ma(window_size, lamb)`` or
    None (any other `filter`).
  """
  import grokfast_jax as gj
  if filter == "ema":
    return gj.grokfast_ema(alpha=alpha, lamb=lamb)
  if filter == "ma":
    return gj.grokfast_ma(window_size=window_size, lamb=lamb)
  return None


@functools.lru_cache(maxsize=32)
def filtered_adamw(filter: str, knobs: tuple, lr: float,
                   weight_decay: float) -> "optax.GradientTransformation":
  """AdamW, behind the Grokfast filter `filter` names (if any).

  Cached: equal settings return the same (stateless) object, so that runs
  with equal settings share the compiled training function.

  Args:
    filter: "none", "ema" or "ma".
    knobs: the filter's knobs, as from :func:`filter_knobs`.
    lr: AdamW's learning rate.
    weight_decay: AdamW's decoupled weight decay.

  Returns:
    ``adamw`` for "none", else ``chain(grokfast_<filter>, adamw)``.
  """
  import optax
  adamw = optax.adamw(lr, weight_decay=weight_decay)
  grokfast = grokfast_filter(filter, **dict(zip(_KNOB_NAMES.get(filter, ()),
                                                knobs)))
  return adamw if grokfast is None else optax.chain(grokfast, adamw)


class TrainState(NamedTuple):
  """What a jitted training call carries (and donates).

  Attributes:
    params: the model's `nnx.Param` state.
    opt_state: the optimizer state.
    key: PRNG key for the epoch shuffles.
  """

  params: nnx.State
  opt_state: optax.OptState
  key: jax.Array
