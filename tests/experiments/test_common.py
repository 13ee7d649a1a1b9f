"""Tests of grokfast_jax.experiments.common."""

import dataclasses
import json
import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import grokfast_jax as gj
from grokfast_jax.experiments import common
from grokfast_jax.experiments import settings


def _history():
  return [
      {"step": 10, "epoch": 1, "train_loss": 4.0, "train_acc": 0.1,
       "val_loss": 4.5, "val_acc": 0.01, "seconds": 1.5},
      {"step": 20, "epoch": 2, "train_loss": 1.0, "train_acc": 0.99,
       "val_loss": 2.0, "val_acc": 0.95, "seconds": 2.5},
      {"step": 30, "epoch": 3, "train_loss": 0.1, "train_acc": 1.0,
       "val_loss": 0.1, "val_acc": 0.99, "seconds": 3.5},
  ]


def test_steps_to_threshold_first_entry_reaching_it():
  assert common.steps_to_threshold(_history()) == (20, 2.5)
  assert common.steps_to_threshold(_history(), threshold=0.96) == (30, 3.5)
  assert common.steps_to_threshold(_history(), key="train_acc",
                                   threshold=0.05) == (10, 1.5)


def test_steps_to_threshold_not_reached_or_empty():
  assert common.steps_to_threshold(_history(), threshold=0.999) == (None, None)
  assert common.steps_to_threshold([]) == (None, None)


def test_save_results_writes_strict_json(tmp_path):
  results = {"a": float("nan"), "b": float("inf"), "c": np.float32(0.5),
             "d": np.arange(3), "e": None, "f": (1, 2), "g": {"h": True}}
  path = common.save_results(tmp_path / "new" / "dir", results)
  assert path == tmp_path / "new" / "dir" / "results.json"
  text = path.read_text()
  assert "NaN" not in text and "Infinity" not in text
  loaded = json.loads(text)
  assert loaded == {"a": None, "b": None, "c": 0.5, "d": [0, 1, 2], "e": None,
                    "f": [1, 2], "g": {"h": True}}


def test_plot_curves_writes_png(tmp_path):
  path = common.plot_curves({"baseline": _history(), "ema": _history()[:2]},
                            tmp_path / "curves.png", "title")
  data = path.read_bytes()
  assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_progress_bar_tracks_steps():
  with common.progress_bar(30, "x") as bar:
    for entry in _history():
      bar.update_to(entry)
    assert bar._bar.n == 30


def test_median_and_format():
  assert common.median([3, 1, 2]) == 2
  assert common.median([4, 1, 2, 3]) == 2.5
  assert common.median([]) is None
  assert common.format_steps(1110) == "1,110"
  assert common.format_steps(None) == "n/a"
  assert math.isclose(common.median([1.5]), 1.5)


# ------------------------------------------- Grokfast settings of the paper tasks


@dataclasses.dataclass(frozen=True)
class _Cfg(settings.FilterSettingsMixin):
  filter: str = "ema"
  alpha: float = 0.9
  lamb: float = 2.0
  window_size: int = 10
  weight_decay: float = 0.5
  lr: float = 1e-3
  seed: int = 0

  def __post_init__(self):
    settings.check_optimizer_settings(self, ("none", "ema", "ma"))


@dataclasses.dataclass(frozen=True)
class _FiniteCfg(_Cfg):

  def __post_init__(self):
    settings.check_optimizer_settings(self, ("ema",), finite=True)


def test_check_message():
  settings.check("size", 3, True, ">= 2")
  with pytest.raises(ValueError, match=r"^size must be >= 2, got 1$"):
    settings.check("size", 1, False, ">= 2")


@pytest.mark.parametrize("kwargs, message", [
    ({"filter": "sma"},
     "filter must be one of ('none', 'ema', 'ma'), got 'sma'"),
    ({"alpha": 1.0}, "alpha must be in [0, 1), got 1.0"),
    ({"alpha": -0.1}, "alpha must be in [0, 1), got -0.1"),
    ({"lamb": -1.0}, "lamb must be >= 0, got -1.0"),
    ({"window_size": 0}, "window_size must be >= 1, got 0"),
    ({"weight_decay": -1.0}, "weight_decay must be >= 0, got -1.0"),
    ({"lr": 0.0}, "lr must be > 0, got 0.0"),
    # The first setting out of range is named, in the documented order.
    ({"lamb": -1.0, "lr": 0.0}, "lamb must be >= 0, got -1.0"),
    ({"alpha": 2.0, "filter": "x"},
     "filter must be one of ('none', 'ema', 'ma'), got 'x'"),
])
def test_check_optimizer_settings_names_the_first_bad_setting(kwargs,
                                                              message):
  with pytest.raises(ValueError) as err:
    _Cfg(**kwargs)
  assert str(err.value) == message


def test_check_optimizer_settings_finite():
  # Without `finite`, infinities pass.
  _Cfg(lamb=math.inf, weight_decay=math.inf, lr=math.inf)
  _FiniteCfg(lamb=1.0, weight_decay=0.0, lr=1.0)
  for name, allowed in (("lamb", ">= 0 and finite"),
                        ("weight_decay", ">= 0 and finite"),
                        ("lr", "> 0 and finite")):
    with pytest.raises(ValueError) as err:
      _FiniteCfg(**{name: math.inf})
    assert str(err.value) == f"{name} must be {allowed}, got inf"
  with pytest.raises(ValueError, match="lr must be > 0 and finite, got nan"):
    _FiniteCfg(lr=math.nan)
  with pytest.raises(ValueError, match=r"one of \('ema',\)"):
    _FiniteCfg(filter="ma")


def test_config_with_defaults_ignores_none_overrides():
  defaults = {"none": {"weight_decay": 0.1},
              "ema": {"alpha": 0.8, "lamb": 3.0}}
  filters = ("none", "ema", "ma")
  cfg = settings.config_with_defaults(_Cfg, filters, defaults, "ema",
                                    {"lamb": None, "seed": 4, "lr": None})
  assert cfg == _Cfg(filter="ema", alpha=0.8, lamb=3.0, seed=4)
  cfg = settings.config_with_defaults(_Cfg, filters, defaults, "none",
                                    {"weight_decay": 2.0})
  assert cfg == _Cfg(filter="none", weight_decay=2.0)
  # The defaults are copied, not changed.
  assert defaults["none"] == {"weight_decay": 0.1}
  with pytest.raises(ValueError, match="filter must be one of"):
    settings.config_with_defaults(_Cfg, filters, defaults, "iir", {})
  with pytest.raises(ValueError, match="lamb must be >= 0"):
    settings.config_with_defaults(_Cfg, filters, defaults, "ema", {"lamb": -1})


def test_filter_settings_mixin_names_and_dict():
  assert _Cfg(filter="none").run_name == "baseline"
  assert _Cfg(filter="ema").run_name == "grokfast-ema"
  assert _Cfg(filter="ma").run_name == "grokfast-ma"
  assert _Cfg(filter="none", weight_decay=0.01).label == "wd 0.01"
  assert _Cfg(filter="ema").label == "alpha 0.9, lamb 2, wd 0.5"
  assert _Cfg(filter="ma").label == "window 10, lamb 2, wd 0.5"
  d = _Cfg(filter="ema").filter_settings_dict(seed=7, extra=1)
  assert list(d) == ["filter", "alpha", "lamb", "weight_decay", "lr", "seed",
                     "extra"]
  assert d["seed"] == 7 and d["extra"] == 1
  assert "alpha" not in _Cfg(filter="ma").filter_settings_dict()
  assert set(_Cfg(filter="none").filter_settings_dict()) == {
      "filter", "weight_decay", "lr", "seed"}


def test_filter_knobs():
  assert settings.filter_knobs(_Cfg(filter="none")) == ()
  assert settings.filter_knobs(_Cfg(filter="ema")) == (0.9, 2.0)
  assert settings.filter_knobs(_Cfg(filter="ma")) == (10, 2.0)


def test_grokfast_filter():
  assert settings.grokfast_filter("none", alpha=0.9, lamb=1.0) is None
  params = {"w": jnp.zeros(3)}
  ema = settings.grokfast_filter("ema", alpha=0.5, lamb=2.0)
  assert isinstance(ema.init(params), gj.GrokfastEmaState)
  ma = settings.grokfast_filter("ma", lamb=2.0, window_size=4)
  assert isinstance(ma.init(params), gj.GrokfastMaState)
  # The same update as the library's filter with the same settings.
  grads = {"w": jnp.asarray([1.0, -2.0, 3.0])}
  want, _ = gj.grokfast_ema(alpha=0.5, lamb=2.0).update(
      grads, gj.grokfast_ema(alpha=0.5, lamb=2.0).init(params), params)
  got, _ = ema.update(grads, ema.init(params), params)
  np.testing.assert_allclose(got["w"], want["w"])


@pytest.mark.parametrize("filter, knobs", [("none", ()), ("ema", (0.8, 0.1)),
                                           ("ma", (5, 2.0))])
def test_filtered_adamw_matches_the_chain_and_is_cached(filter, knobs):
  tx = settings.filtered_adamw(filter, knobs, 1e-3, 0.5)
  assert settings.filtered_adamw(filter, knobs, 1e-3, 0.5) is tx
  assert settings.filtered_adamw(filter, knobs, 1e-3, 0.25) is not tx
  adamw = optax.adamw(1e-3, weight_decay=0.5)
  if filter == "ema":
    want_tx = optax.chain(gj.grokfast_ema(alpha=0.8, lamb=0.1), adamw)
  elif filter == "ma":
    want_tx = optax.chain(gj.grokfast_ma(window_size=5, lamb=2.0), adamw)
  else:
    want_tx = adamw
  params = {"w": jnp.asarray([0.5, -1.0, 2.0])}
  state, want_state = tx.init(params), want_tx.init(params)
  assert (len(state) == 2) == (filter != "none")
  for grads in ({"w": jnp.asarray([1.0, -2.0, 3.0])},
                {"w": jnp.asarray([-0.5, 0.0, 1.0])}):
    got, state = tx.update(grads, state, params)
    want, want_state = want_tx.update(grads, want_state, params)
    np.testing.assert_allclose(got["w"], want["w"], rtol=1e-6)


def test_train_state_fields():
  state = settings.TrainState(params={"w": 1}, opt_state=(), key=None)
  assert state._fields == ("params", "opt_state", "key")
  assert state._replace(key=3).key == 3
