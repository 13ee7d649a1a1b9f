"""The forecasting protocols: what ``--protocol reference`` sets, the data
files' conventions, and the optimizers it trains with."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from grokfast_jax.experiments.forecasting import training
from grokfast_jax.experiments.forecasting.config import (REFERENCE,
                                                         ForecastConfig,
                                                         data_defaults,
                                                         make_config,
                                                         parse_ratios)
from tests.experiments.test_forecast_cli import forecast, write_csv


def test_quick_is_the_class_defaults_and_ett_keeps_its_split():
  assert make_config({"data": "d/ETTh1.csv"}) == ForecastConfig()
  other = make_config({"data": "d/exchange_rate.csv"})
  assert other == ForecastConfig(ratios=(0.7, 0.1, 0.2))


def test_reference_sets_what_no_flag_gives():
  cfg = make_config({"data": "d/ETTh2.csv", "protocol": "reference"})
  for name, value in REFERENCE.items():
    assert getattr(cfg, name) == value, name
  assert cfg.ratios == (0.6, 0.2, 0.2) and cfg.ft_epochs == 30
  ili = make_config({"data": "national_illness.csv", "protocol": "reference",
                     "max_epochs": 4, "ratios": (0.5, 0.2, 0.3)})
  assert ili.ft_epochs == 20 and ili.max_epochs == 4
  assert ili.ratios == (0.5, 0.2, 0.3) and ili.lr == 3e-4
  assert data_defaults("EXCHANGE.csv", "reference")["ft_epochs"] == 30
  assert data_defaults("ETTm1.csv", "reference") == {
      "ratios": (0.6, 0.2, 0.2), "ft_epochs": 20}


@pytest.mark.parametrize("text", ["0.7,0.1", "0.8,0.3,0.1", "a,b,c",
                                  "0.7,0,0.3"])
def test_ratios_flag_refuses_what_is_not_three_fractions(text):
  with pytest.raises(Exception, match="3 positive fractions"):
    parse_ratios(text)
  assert parse_ratios("0.7,0.1,0.2") == (0.7, 0.1, 0.2)


@pytest.mark.parametrize("field, value, match", [
    ("protocol", "paper", "protocol must be one of"),
    ("ft_schedule", "linear", "ft_schedule must be one of"),
    ("ft_clip", "none", "ft_clip must be one of"),
    ("lr_decay", 1.5, r"lr_decay must be in \(0, 1\]"),
    ("patience", 0, "patience must be >= 1 or None"),
    ("ft_lr_alpha", 0.0, "ft_lr_alpha must be > 0"),
    ("weight_decay", -1e-3, "weight_decay must be >= 0"),
])
def test_bad_protocol_settings_are_refused(field, value, match):
  with pytest.raises(ValueError, match=match):
    ForecastConfig(**{field: value})


def _updates(tx, params, steps):
  """The updates of `steps` steps with gradients of ones, jitted."""
  grads = jax.tree.map(jnp.ones_like, params)
  state = tx.init(params)
  step = jax.jit(tx.update)
  out = []
  for _ in range(steps):
    u, state = step(grads, state, params)
    out.append(u)
  return out


def test_finetune_groups_get_their_rates():
  params = {"spectral": {"logits": jnp.zeros((3, 2)),
                         "alpha_logits": jnp.zeros((3, 2))},
            "linear": {"kernel": jnp.full((4, 2), 0.5)}}
  tx = training.finetune_optimizer(2e-2, 4e-4, 1e-4, lr_alpha=1e-2,
                                   decoupled_wd=False, clip="norm")
  (u,) = _updates(tx, params, 1)
  # Adam's first step moves every coordinate by its rate (clipping the
  # gradient's norm rescales all coordinates alike).
  np.testing.assert_allclose(u["spectral"]["logits"], -2e-2, rtol=1e-5)
  np.testing.assert_allclose(u["spectral"]["alpha_logits"], -1e-2,
                             rtol=1e-5)
  np.testing.assert_allclose(u["linear"]["kernel"], -4e-4, rtol=1e-5)
  # Decoupled decay adds lr * wd * w after Adam's step; the L2 term did not.
  tx = training.finetune_optimizer(2e-2, 4e-4, 1e-1, decoupled_wd=True)
  (u,) = _updates(tx, params, 1)
  np.testing.assert_allclose(u["linear"]["kernel"], -4e-4 * (1 + 0.1 * 0.5),
                             rtol=1e-5)
  np.testing.assert_allclose(u["spectral"]["alpha_logits"], -2e-2, rtol=1e-5)


def test_cosine_schedule_warms_up_then_decays_to_zero():
  params = {"w": jnp.zeros(3)}
  tx = training.finetune_optimizer(1e-2, 1e-3, 0.0, schedule="cosine",
                                   warmup_steps=4, total_steps=12)
  rates = [-float(u["w"][0]) for u in _updates(tx, params, 12)]
  np.testing.assert_allclose(rates[:5], [0, 2.5e-4, 5e-4, 7.5e-4, 1e-3],
                             rtol=1e-4, atol=1e-9)
  assert all(a > b for a, b in zip(rates[4:], rates[5:]))
  expected = 1e-3 * 0.5 * (1 + np.cos(np.pi * 7 / 8))
  np.testing.assert_allclose(rates[11], expected, rtol=1e-4)


def test_base_rate_decays_per_epoch_with_an_l2_term():
  params = {"w": jnp.full(2, 3.0)}
  tx = training.base_optimizer(1e-3, 3e-5, 0.9, 2)
  rates = [-float(u["w"][0]) for u in _updates(tx, params, 6)]
  np.testing.assert_allclose(rates, [1e-3, 1e-3, 9e-4, 9e-4, 8.1e-4, 8.1e-4],
                             rtol=1e-4)
  assert training.base_optimizer(1e-3) is training.base_optimizer(1e-3)


def test_reference_protocol_through_the_command(tmp_path, capsys):
  path = write_csv(tmp_path / "sales.csv", rows=600)
  out = tmp_path / "run"
  assert forecast(path, out, "--protocol", "reference", "--control") == 0
  results = json.loads((out / "results.json").read_text())
  settings = results["settings"]
  assert settings["protocol"] == "reference"
  assert settings["ratios"] == [0.7, 0.1, 0.2]
  assert results["data"]["split_rows"]["train"] == [0, 420]
  assert settings["ft_batch_size"] == 256 and settings["learnable_alpha"]
  assert settings["alphas"] == [0.9, 0.99, 0.999, 0.9999]
  # The flags given win over the protocol: one epoch each.
  assert settings["max_epochs"] == 1 and settings["ft_epochs"] == 1
  assert results["stages"]["finetune"]["steps_per_epoch"] == 1
  assert results["stages"]["base"]["steps_per_epoch"] == (420 - 16 + 1) // 64
  assert "control" in results["metrics"]
