"""The Grokfast settings and training pieces the paper tasks (MNIST, IMDb,
QM9) share.

Validation and defaults of the filter knobs (:func:`check`,
:func:`check_optimizer_settings`, :func:`config_with_defaults`,
:func:`config_from_flags`), the names and settings dicts built from them
(:class:`FilterSettingsMixin`), the filter in front of AdamW
(:func:`grokfast_filter`, :func:`filtered_adamw`, :func:`make_optimizer`),
the carried :class:`TrainState`, the shuffled minibatch epoch
(:func:`shuffled_epoch`) and the early stop at a mark (:func:`reached`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import (
  TYPE_CHECKING,
  Any,
  Callable,
  Mapping,
  NamedTuple,
  Optional,
  Sequence,
  cast,
)

import jax

if TYPE_CHECKING:
  import optax
  from flax import nnx


GROKFAST_FILTERS = ("none", "ema", "ma")

# The filter knobs each filter leaves unused (dropped from settings dicts).
_UNUSED_KNOBS = {
  "none": ("alpha", "lamb", "window_size"),
  "ema": ("window_size",),
  "ma": ("alpha",),
}
# The knobs each filter takes, in the order of :func:`filter_knobs`.
_KNOB_NAMES = {
  "none": (),
  "ema": ("alpha", "lamb"),
  "ma": ("window_size", "lamb"),
}


def check(name: str, value: Any, ok: bool, allowed: str) -> None:
  """Raises ``ValueError("<name> must be <allowed>, got <value>")`` unless
  `ok` (`allowed` says what is, e.g. ">= 1").

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


def check_optimizer_settings(
  cfg: Any, filters: Sequence[str], *, finite: bool = False
) -> None:
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
  check(
    "weight_decay",
    cfg.weight_decay,
    cfg.weight_decay >= 0 and bounded(cfg.weight_decay),
    ">= 0" + suffix,
  )
  check("lr", cfg.lr, cfg.lr > 0 and bounded(cfg.lr), "> 0" + suffix)


def config_with_defaults(
  cls: type,
  filters: Sequence[str],
  defaults: Mapping[str, Mapping[str, Any]],
  filter: str,
  overrides: Mapping[str, Any],
) -> Any:
  """``cls(filter=filter, **defaults[filter])`` updated by `overrides`.

  Args:
    cls: the config class (it validates itself).
    filters: the allowed filters.
    defaults: filter -> default settings.
    filter: the chosen filter.
    overrides: settings to use instead of the defaults; None values are
      ignored (options not given keep the default for the filter).

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


def config_from_flags(
  cls: type,
  filters: Sequence[str],
  defaults: Mapping[str, Mapping[str, Any]],
  given: Mapping[str, Any],
  default: str = "ema",
) -> Any:
  """The config of the flags `given` (field -> value, absent when not given):
  :func:`config_with_defaults` of the given filter (`default` if none) and
  the other values; with filter "none" the filter knobs given are ignored.

  Example:
    >>> import collections
    >>> Cfg = collections.namedtuple("Cfg", "filter lamb seed")
    >>> config_from_flags(Cfg, ("none", "ema"), {"none": {"lamb": 0.0,
    ...                   "seed": 0}}, {"filter": "none", "lamb": 3.0})
    Cfg(filter='none', lamb=0.0, seed=0)
  """
  given = dict(given)
  filter = given.pop("filter", default)
  if filter == "none":
    for knob in _UNUSED_KNOBS["none"]:
      given.pop(knob, None)
  return config_with_defaults(cls, filters, defaults, filter, given)


def is_paper_setting(cfg: Any, paper: Any, free: Sequence[str]) -> bool:
  """Whether the settings dicts (``to_dict``) of `cfg` and of the `paper`
  config agree on every key but the `free` ones."""
  mine, theirs = cfg.to_dict(), paper.to_dict()
  return all(mine[k] == theirs[k] for k in mine if k not in free)


def require_data(cfg: Any, what: str) -> str:
  """`cfg.data`; raises ``ValueError("--data is required: <what>")`` if it
  is None."""
  if cfg.data is None:
    raise ValueError(f"--data is required: {what}")
  return cfg.data


def run_name(filter: str) -> str:
  """A run's short name: "baseline" for "none", else "grokfast-<filter>"."""
  return "baseline" if filter == "none" else f"grokfast-{filter}"


class FilterSettingsMixin:
  """Names and dict of a config dataclass with the fields filter, alpha, lamb,
  window_size and weight_decay (the paper tasks' configs derive from it).

  In those configs: filter, the gradient filter in front of AdamW ("none",
  "ema" or "ma"); alpha, Grokfast-EMA's momentum in [0, 1); lamb, Grokfast's
  amplification, >= 0 ("ema" and "ma"); window_size, Grokfast-MA's window,
  >= 1; weight_decay, AdamW's decoupled weight decay, >= 0; lr, AdamW's
  learning rate, > 0 (:func:`check_optimizer_settings`).

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

  # Supplied by the dataclass that derives from the mixin.
  filter: str
  alpha: float
  lamb: float
  window_size: int
  weight_decay: float

  @property
  def run_name(self) -> str:
    """A short label: "baseline", "grokfast-ema" or "grokfast-ma"."""
    return run_name(self.filter)

  @property
  def label(self) -> str:
    """The settings that tell runs apart, e.g. "alpha 0.8, lamb 0.1, wd 2"."""
    knobs = {
      "none": [],
      "ema": [f"alpha {self.alpha:g}", f"lamb {self.lamb:g}"],
      "ma": [f"window {self.window_size}", f"lamb {self.lamb:g}"],
    }
    return ", ".join(knobs[self.filter] + [f"wd {self.weight_decay:g}"])

  def filter_settings_dict(self, **extra: Any) -> dict[str, Any]:
    """The dataclass's fields as a dict without the filter knobs its filter
    does not use, updated by `extra` (replaced keys keep their place)."""
    d = dataclasses.asdict(cast(Any, self))
    for name in _UNUSED_KNOBS[self.filter]:
      del d[name]
    d.update(extra)
    return d


def filter_knobs(cfg: Any) -> tuple:
  """The knobs `cfg.filter` takes: () for "none", (alpha, lamb) for "ema",
  (window_size, lamb) for "ma" (the `knobs` of :func:`filtered_adamw`)."""
  return tuple(getattr(cfg, name) for name in _KNOB_NAMES[cfg.filter])


def grokfast_filter(
  filter: str,
  *,
  alpha: Any = None,
  lamb: Any = None,
  window_size: Optional[int] = None,
) -> Optional[optax.GradientTransformation]:
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
    if window_size is None:
      raise ValueError("window_size is required with filter 'ma'")
    return gj.grokfast_ma(window_size=window_size, lamb=lamb)
  return None


@functools.lru_cache(maxsize=32)
def filtered_adamw(
  filter: str, knobs: tuple, lr: float, weight_decay: float
) -> optax.GradientTransformation:
  """AdamW, behind the Grokfast filter `filter` names (if any). Cached:
  equal settings share one (stateless) object and compiled training.

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
  grokfast = grokfast_filter(
    filter, **dict(zip(_KNOB_NAMES.get(filter, ()), knobs))
  )
  return adamw if grokfast is None else optax.chain(grokfast, adamw)


def make_optimizer(cfg: Any) -> optax.GradientTransformation:
  """:func:`filtered_adamw` of a config's filter, knobs, lr and weight decay
  (equal settings share one object and with it the compiled training)."""
  return filtered_adamw(cfg.filter, filter_knobs(cfg), cfg.lr, cfg.weight_decay)


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


def identity(x: Any) -> Any:
  """`x` (the default `shard_batch` of one device)."""
  return x


def count_params(params: Any) -> int:
  """The number of scalars in the arrays of `params`."""
  return sum(int(math.prod(p.shape)) for p in jax.tree.leaves(params))


def seed_keys(seed: int) -> tuple[jax.Array, jax.Array]:
  """``split(key(seed))``: the initialization key and the shuffle key."""
  init_key, shuffle_key = jax.random.split(jax.random.key(seed))
  return init_key, shuffle_key


@functools.lru_cache(maxsize=32)
def shuffled_epoch(
  update: Callable,
  steps: int,
  batch_size: int,
  keys: tuple[str, str] = ("x", "y"),
) -> Callable:
  """One epoch of shuffled minibatches: ``train_epoch(state, epoch, data)``.

  Splits the state's `key` (carried, so the order is a function of the seed
  and the epoch, and a checkpoint holds it), permutes the examples with the
  new sub-key and scans `update` over `steps` minibatches (the remainder is
  dropped).

  Args:
    update: the pure ``update(state, (x, y)) -> (state, metrics)``.
    steps: minibatches an epoch.
    batch_size: examples a minibatch.
    keys: the data's inputs and labels (``data[keys[0]]``, ...).

  Returns:
    ``train_epoch(state, epoch, data) -> (state, {"train_" + name: mean of
    metrics[name] over the minibatches})``. Cached: equal arguments return
    the same function (and share the harness's compilation).
  """

  def train_epoch(state, epoch, data):
    del epoch  # the order follows the carried key
    x, y = data[keys[0]], data[keys[1]]
    key, sub = jax.random.split(state.key)
    order = jax.random.permutation(sub, x.shape[0])
    idx = order[: steps * batch_size].reshape(steps, batch_size)
    state, metrics = jax.lax.scan(
      update, state._replace(key=key), (x[idx], y[idx])
    )
    return state, {f"train_{k}": v.mean() for k, v in metrics.items()}

  return train_epoch


def reached(
  key: str, mark: float, history: Sequence[Mapping[str, Any]]
) -> bool:
  """Whether the newest entry after training has ``entry[key] >= mark``
  (the step-0 evaluation stops no run); bind `key` and `mark` with
  ``functools.partial`` for a :attr:`Program.should_stop`."""
  last = history[-1]
  return last["step"] > 0 and last[key] >= mark


_UNOPTIMIZED: dict[str, Any] = {"xla_backend_optimization_level": 0}


def compile_o0(fn: Callable, *args: Any) -> Any:
  """``jit(fn)`` for `args`, compiled without optimization: the same values
  as eager execution, for a run-once graph (an initialization) whose
  optimization costs more than it saves."""
  return jax.jit(fn).lower(*args).compile(compiler_options=_UNOPTIMIZED)
