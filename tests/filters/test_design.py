"""Tests for the NumPy filter-design helpers against scipy.signal."""

import numpy as np
import pytest
import scipy.signal

import grokfast_jax as gj

CUTOFFS = [0.005, 0.04, 0.2, 0.5, 0.9]


@pytest.mark.parametrize("order", range(1, 7))
@pytest.mark.parametrize("cutoff", CUTOFFS)
def test_butterworth_matches_scipy(order, cutoff):
  b, a = gj.butterworth(order, cutoff)
  want_b, want_a = scipy.signal.butter(order, cutoff)
  assert b.dtype == a.dtype == np.float64
  assert a[0] == 1.0 and len(a) == len(b) == order + 1
  np.testing.assert_allclose(b, want_b, rtol=1e-9, atol=1e-18)
  np.testing.assert_allclose(a, want_a, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("order", [1, 3, 6])
def test_butterworth_gain_is_one_at_dc_and_half_power_at_cutoff(order):
  cutoff = 0.1
  b, a = gj.butterworth(order, cutoff)
  assert np.sum(b) / np.sum(a) == pytest.approx(1.0, rel=1e-9)
  z = np.exp(-1j * np.pi * cutoff)  # the cut-off, as a fraction of Nyquist
  h = np.polyval(b[::-1], z) / np.polyval(a[::-1], z)
  assert abs(h) ** 2 == pytest.approx(0.5, rel=1e-9)


@pytest.mark.parametrize("ba", [
    gj.butterworth(3, 0.1), gj.ema_coefficients(0.9), ([1.0, 2.0, 1.0], [4.0]),
    ([0.5, 0.5], [2.0, -0.5, 0.1]), ([1.0], [1.0, -1.5]),  # unstable is fine
])
@pytest.mark.parametrize("n", [1, 7, 512])
def test_frequency_response_matches_freqz(ba, n):
  b, a = ba
  freqs, h = gj.frequency_response(b, a, n)
  w, want = scipy.signal.freqz(b, a, worN=n)
  np.testing.assert_allclose(freqs, w / (2 * np.pi), rtol=0, atol=1e-15)
  np.testing.assert_allclose(h, want, rtol=1e-10, atol=1e-12)
  assert freqs[0] == 0.0 and freqs[-1] < 0.5


@pytest.mark.parametrize("ba", [
    gj.butterworth(1, 0.3), gj.butterworth(4, 0.02), gj.ema_coefficients(0.98),
    ([0.2, 0.3], [2.0, -1.0, 0.3]), ([1.0, 0.5, 0.25, 0.125], [1.0]),
])
def test_lfilter_zi_matches_scipy(ba):
  b, a = ba
  np.testing.assert_allclose(gj.lfilter_zi(b, a),
                             scipy.signal.lfilter_zi(b, a), rtol=1e-10,
                             atol=1e-14)


def test_lfilter_zi_of_a_pure_gain_is_empty():
  assert gj.lfilter_zi([3.0], [1.5]).shape == (0,)


def test_ema_coefficients():
  b, a = gj.ema_coefficients(0.75)
  np.testing.assert_array_equal(b, [0.25])
  np.testing.assert_array_equal(a, [1.0, -0.75])
  _, h = gj.frequency_response(b, a, 8)
  assert abs(h[0]) == pytest.approx(1.0)


@pytest.mark.parametrize("call,match", [
    (lambda: gj.butterworth(0, 0.1), "order must be an int >= 1"),
    (lambda: gj.butterworth(2.0, 0.1), "order must be an int >= 1"),
    (lambda: gj.butterworth(True, 0.1), "order must be an int >= 1"),
    (lambda: gj.butterworth(2, 0.0),
     r"cutoff must be a finite number in \(0, 1\)"),
    (lambda: gj.butterworth(2, 1.0), "cutoff must be"),
    (lambda: gj.butterworth(2, float("nan")), "cutoff must be"),
    (lambda: gj.ema_coefficients(1.0),
     r"alpha must be a finite number in \[0, 1\)"),
    (lambda: gj.frequency_response([1.0], [1.0], 0), "n must be an int >= 1"),
    (lambda: gj.lfilter_zi([1.0], [0.0, 1.0]), r"a\[0\] must be nonzero"),
    (lambda: gj.lfilter_zi([1.0], [1.0, -1.0]), "a must give a stable filter"),
    (lambda: gj.lfilter_zi([[1.0]], [1.0]), "b must be a non-empty 1-D"),
    (lambda: gj.lfilter_zi([1.0], []), "a must be a non-empty 1-D"),
    (lambda: gj.lfilter_zi([float("inf")], [1.0]), "b must hold finite"),
])
def test_bad_arguments(call, match):
  with pytest.raises(ValueError, match=match):
    call()
