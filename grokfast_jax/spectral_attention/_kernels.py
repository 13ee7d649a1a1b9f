"""The numerical kernels of the Spectral Attention modules (private).

The in-batch EMAs of ``BatchedSpectralAttention`` in closed form
(:func:`_unrolled_emas`) and by the blocked, channel-chunked associative scan
(:func:`_scan_mix`, :func:`_scan_emas`), the Spectral Attention mix, the
choice between the two methods ("auto"), the precision and chunk-budget
constants with the hardware measurements behind them, and the jitted programs
the modules call. Nothing here depends on Flax.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

# The in-batch EMAs are float32 contractions (einsum) over up to B samples with
# weights down to (1 - alpha) alpha^B. At the backend's default precision a GPU
# contracts float32 in a reduced-precision mode and a TPU in bfloat16: on an
# H100 the closed form and the scan then drifted 2-3e-5 (relative) from the
# float32 recursion, against 1e-6 on CPU. Full float32 everywhere.
_PRECISION = jax.lax.Precision.HIGHEST


def _mix(logits: jax.Array, feature: jax.Array, emas: jax.Array) -> jax.Array:
  """2 * sum_k softmax(logits)_k * S_k, in the reduced form.

  Args:
    logits: (C, 2N+1, L).
    feature: (..., C, L).
    emas: (..., N, C, L), M_1..M_N matching `feature`'s leading axes.

  Returns:
    (..., C, L).
  """
  coef_f, coef_m = _mix_coefficients(logits)
  coef_m = jnp.swapaxes(coef_m, 0, 1)  # (N, C, L)
  out = coef_f * feature + jnp.sum(coef_m * emas, axis=-3)
  return out.astype(feature.dtype)


def _mix_coefficients(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The reduced mix's weights of F, (C, L), and of M_1..M_N, (C, N, L).

  Args:
    logits: (C, 2N+1, L).
  """
  n = (logits.shape[1] - 1) // 2
  w = jax.nn.softmax(logits, axis=1)  # (C, 2N+1, L)
  coef_f = 2.0 * jnp.sum(w[:, :n], axis=1) + w[:, n]  # (C, L)
  # Component N+i is M_i, component N-i is F - M_i (i = 1..N).
  coef_m = 2.0 * (w[:, n + 1 :] - jnp.flip(w[:, :n], axis=1))  # (C, N, L)
  return coef_f, coef_m


@jax.jit
def _sequential_core(logits, alphas, ema, initialized, x):
  """One sequential step: (output, new EMA state); jitted as one program."""
  f = x.astype(jnp.float32)
  prev = jnp.where(initialized, ema, jax.lax.stop_gradient(f)[None])
  a = alphas[:, :, None]  # (N, C, 1)
  m = a * prev + (1.0 - a) * f[None]
  return _mix(logits, f, m).astype(x.dtype), jax.lax.stop_gradient(m)


def _ema_kernel(log_a: jax.Array, gain: jax.Array, k: int) -> jax.Array:
  """kernel[n, c, t, s] = (1 - a) a^(t-1-s) for s < t, else 0; (N, C, K+1, K).

  `log_a` and `gain` are (N, C) here, or (C, N) for a (C, N, K+1, K) kernel.
  Only powers alpha^j <= 1 appear (exp of j * log(alpha)), never a division
  by alpha^t.
  """
  t = jnp.arange(k + 1, dtype=jnp.float32)[:, None]  # (K+1, 1)
  s = jnp.arange(k, dtype=jnp.float32)[None, :]  # (1, K)
  lag = t - 1.0 - s  # (K+1, K); >= 0 where s < t
  causal = lag >= 0
  safe_lag = jnp.where(causal, lag, 0.0)
  kernel = gain[:, :, None, None] * jnp.exp(
    safe_lag[None, None] * log_a[:, :, None, None]
  )
  return jnp.where(causal[None, None], kernel, 0.0)


def _unrolled_emas(
  theta: jax.Array, f: jax.Array, m0: jax.Array, bptt: bool
) -> tuple[jax.Array, jax.Array]:
  """In-batch EMAs in closed form: one (B+1) x B kernel per alpha and channel.

  alpha = sigmoid(theta); log(alpha) and 1 - alpha come from log_sigmoid and
  sigmoid(-theta), so alpha near 1 loses no precision to cancellation, and
  the kernel only holds powers alpha^k <= 1 (no division by alpha^t).

  Returns:
    (E_0..E_{B-1} of shape (B, N, C, L), E_B of shape (N, C, L)); E_t
    excludes sample t.
  """
  b = f.shape[0]
  log_a = jax.nn.log_sigmoid(theta)  # (N, C)
  gain = jax.nn.sigmoid(-theta)  # 1 - alpha
  kernel = _ema_kernel(log_a, gain, b)  # (N, C, B+1, B)
  t = jnp.arange(b + 1, dtype=jnp.float32)
  decay = jnp.exp(t[:, None, None] * log_a[None])  # (B+1, N, C)
  history = f if bptt else jax.lax.stop_gradient(f)
  emas = jnp.einsum("nctb,bcl->tncl", kernel, history, precision=_PRECISION)
  emas = emas + decay[..., None] * m0[None]
  return emas[:-1], emas[-1]


# Block length K of the "scan" method: closed form inside blocks of K samples,
# an associative scan across blocks. On CPU (forward + backward, B = 1024,
# C = 321) K = 8 and 16 timed alike and K = 32 was 20% slower.
_SCAN_BLOCK = 16

# Channel chunk size of the "scan" method, in float32 elements of one chunk's
# in-batch EMAs (N x B x channels x L): the channels are filtered one chunk at a
# time (``jax.lax.map``) and each chunk is recomputed in the backward pass
# (``jax.checkpoint``), so the temporaries scale with the chunk, not with C.
# 2^20 elements (4 MiB per EMA-sized temporary) measured fastest on CPU for
# B = 128-1024 and C = 7-321: 2^18 (one channel per chunk at B = 1024, L = 96)
# was 1.5x slower, 2^22 15-20% slower, and a single chunk for all channels up
# to 1.7x slower (B = 1024, C = 7) with up to 3.4x the memory (B = 1024,
# C = 321).
_SCAN_CHUNK_ELEMENTS = 1 << 20
# On a GPU (or TPU) the chunks run one after another as a device loop, and
# small chunks starve the device: on an H100 (forward + backward, L = 96)
# 2^20-element chunks were 5-7x slower than one chunk at B = 1024 (C = 321:
# 107 chunks, 13.7 vs 2.8 ms; C = 862: 431 chunks, 47.6 vs 7.0 ms) and 16-28x
# at B = 128; 2^26 (3-4 chunks at B = 1024) was 1.3-1.4x slower than one
# chunk, which is also not recomputed in the backward pass. 2^27 elements
# (512 MiB per EMA-sized temporary) keeps B = 1024, C = 321 in one chunk;
# larger inputs trade the recomputation of a few chunks for temporaries that
# stop growing with C. Not measured on a TPU.
_SCAN_CHUNK_ELEMENTS_ACCELERATOR = 1 << 27


def _default_chunk_elements() -> int:
  """The "scan" method's chunk budget for the default backend.

  Read when the BSA program is traced. ``jax.default_backend()`` is the
  process's backend, so a CPU computation forced on a GPU host (e.g. under
  ``jax.default_device``) gets the accelerator's larger chunks: the same
  result, with more memory.
  """
  if jax.default_backend() == "cpu":
    return _SCAN_CHUNK_ELEMENTS
  return _SCAN_CHUNK_ELEMENTS_ACCELERATOR


def _compose(first, second):
  """Composes two affine maps E -> A E + b, `first` applied first."""
  a1, b1 = first
  a2, b2 = second
  return a2 * a1, a2 * b1 + b2


def _block_emas(
  theta: jax.Array, h: jax.Array, m0: jax.Array, final_row: int
) -> tuple[list[jax.Array], jax.Array, jax.Array, jax.Array]:
  """In-batch EMAs of some channels, in blocks; the "scan" method's core.

  Args:
    theta: (c, N) alpha logits, alpha = sigmoid(theta).
    h: (c, K, nb, L) history: sample i * K + s at ``h[:, s, i]``; samples
      past the batch (padding of the last block) are zeros.
    m0: (c, N, L) state before sample 0.
    final_row: number of real samples in the last block (1..K).

  Returns:
    local: N arrays (c, K, nb, L), the EMA of the block's earlier samples
      from a zero start (sample s of block i excluded).
    starts: (c, N, nb, L), the EMA before each block's first sample.
    decay: (c, N, K), alpha^s.
    final: (c, N, L), the EMA after the last real sample.
    The EMA before sample i * K + s is local[n][:, s, i] + decay[:, n, s] *
    starts[:, n, i].
  """
  k, nb = h.shape[1], h.shape[2]
  log_a = jax.nn.log_sigmoid(theta)  # (c, N)
  gain = jax.nn.sigmoid(-theta)  # 1 - alpha
  kernel = _ema_kernel(log_a, gain, k)  # (c, N, K+1, K)
  # One product per smoothing factor, and the block ends apart: no slice of
  # an (N, K+1)-row product (whose gradient is a pad and an add of its whole
  # size); 20% faster forward + backward on CPU (B = 1024, C = 321).
  local = [
    jnp.einsum("cts,csil->ctil", kernel[:, i, :k], h, precision=_PRECISION)
    for i in range(theta.shape[1])
  ]
  block_end = jnp.einsum(
    "cns,csil->cnil", kernel[:, :, k], h, precision=_PRECISION
  )  # (c, N, nb, L)
  a_k = jnp.exp(k * log_a)  # alpha^K, (c, N)
  block_decay = jnp.broadcast_to(a_k[:, :, None, None], a_k.shape + (nb, 1))
  powers, sums = jax.lax.associative_scan(
    _compose, (block_decay, block_end), axis=2
  )
  ends = sums + powers * m0[:, :, None]  # E after each block
  starts = jnp.concatenate([m0[:, :, None], ends[:, :, :-1]], axis=2)
  j = jnp.arange(k, dtype=jnp.float32)
  decay = jnp.exp(j * log_a[..., None])  # (c, N, K)
  if final_row == k:
    final = ends[:, :, -1]
  else:  # the EMA before the last block's first padding sample
    final = (
      jnp.einsum(
        "cns,csl->cnl",
        kernel[:, :, final_row],
        h[:, :, -1],
        precision=_PRECISION,
      )
      + jnp.exp(final_row * log_a)[..., None] * starts[:, :, -1]
    )
  return local, starts, decay, final


def _blocked(x: jax.Array, k: int) -> jax.Array:
  """(B, C, L) -> (C, K, nb, L), zero-padded to nb = ceil(B / K) blocks."""
  b, c, l = x.shape
  nb = -(-b // k)
  x = jnp.pad(x, ((0, nb * k - b), (0, 0), (0, 0))).reshape(nb, k, c, l)
  return jnp.transpose(x, (2, 1, 0, 3))


def _scan_emas(
  theta: jax.Array,
  f: jax.Array,
  m0: jax.Array,
  bptt: bool,
  block: int = _SCAN_BLOCK,
) -> tuple[jax.Array, jax.Array]:
  """The same EMAs as :func:`_unrolled_emas` in O(B K N C L) work.

  The recurrence E_{t+1} = a E_t + (1 - a) F_t is an affine map per sample,
  (A, b) = (a, (1 - a) F_t), and maps compose associatively as
  (A2, b2) o (A1, b1) = (A2 A1, A2 b1 + b2). The batch is cut into blocks of
  `block` samples (zero-padded at the end): inside a block the EMA from a
  zero start is the closed-form product with a K x K kernel, the blocks'
  maps (a^K, local EMA at the block end) are combined by
  ``jax.lax.associative_scan`` (O(log(B/K)) depth), and every sample adds
  a^j times its block's start state. ``block=1`` is a plain associative scan
  over samples. Powers of alpha come from exp(j log alpha) and from products
  inside the scan; nothing divides by alpha^t.

  The "scan" method itself (:func:`_scan_mix`) runs the same blocks per
  chunk of channels and mixes without materializing these EMAs; this
  function returns them (for tests and reference).

  Returns:
    (E_0..E_{B-1} of shape (B, N, C, L), E_B of shape (N, C, L)).
  """
  b, c, l = f.shape
  n = theta.shape[0]
  k = min(block, b)
  nb = -(-b // k)
  history = f if bptt else jax.lax.stop_gradient(f)
  local, starts, decay, final = _block_emas(
    theta.T, _blocked(history, k), jnp.swapaxes(m0, 0, 1), b - (nb - 1) * k
  )
  emas = (
    jnp.stack(local, axis=1) + decay[..., None, None] * starts[:, :, None]
  )  # (C, N, K, nb, L)
  emas = jnp.transpose(emas, (3, 2, 1, 0, 4)).reshape(nb * k, n, c, l)
  return emas[:b], jnp.swapaxes(final, 0, 1)


def _chunk_channels(channels: int, per_channel: int, budget: int) -> int:
  """Channels per chunk of the "scan" method (`channels`: a single chunk).

  At most ``most = budget // per_channel`` channels (at least 1). Preferably
  the largest divisor of `channels` up to `most`, so that no padding channels
  are needed: padding costs two extra copies of the input in the compiled
  program (measured on CPU at B = 128-1024, C = 321-862: 1.5x the memory and
  4-17% slower than chunks of a divisor, even one giving 14x as many chunks).
  Not a single channel, though, nor a chunk under 1/16 of the budget (the
  per-chunk overhead: at B = 1024, C = 7, seven 1-channel chunks were 1.4x
  slower than three padded 3-channel ones); then ``ceil(channels / most)``
  even chunks, the last one padded.
  """
  if channels * per_channel <= budget:
    return channels
  most = max(1, budget // per_channel)
  divisor = next(d for d in range(most, 0, -1) if channels % d == 0)
  if divisor > 1 and 16 * divisor * per_channel >= budget:
    return divisor
  n_chunks = -(-channels // most)
  return -(-channels // n_chunks)


def _scan_mix(
  logits: jax.Array,
  theta: jax.Array,
  f: jax.Array,
  m0: jax.Array,
  bptt: bool,
  block: int = _SCAN_BLOCK,
  chunk_elements: int | None = None,
) -> tuple[jax.Array, jax.Array]:
  """BSA outputs by the "scan" method, in chunks of channels.

  Everything is independent across channels (the EMAs, their mixing
  weights, the smoothing factors), so the channels are cut into chunks of
  about `chunk_elements` EMA elements (:func:`_chunk_channels`) and
  ``jax.lax.map`` runs the blocked scan of :func:`_scan_emas` and the mix on
  one chunk at a time; the chunk body is wrapped in ``jax.checkpoint``, so the
  backward pass keeps only each chunk's inputs and recomputes its EMAs. The
  (B, N, C, L) EMAs never exist for all channels at once, and the mix is
  applied per block without forming them for a chunk either: the output for
  sample i K + s is

    coef_f F + sum_n coef_m[n] (local[n, s, i] + a_n^s start[n, i]).

  Args:
    logits: (C, 2N+1, L) mixing logits.
    theta: (N, C) alpha logits.
    f: (B, C, L) float32 features.
    m0: (N, C, L) state before sample 0.
    bptt: whether the in-batch history carries gradients.
    block: block length K.
    chunk_elements: chunk budget in EMA elements (default: the backend's,
      :func:`_default_chunk_elements`).

  Returns:
    (outputs (B, C, L), E_B of shape (N, C, L)).
  """
  b, c, l = f.shape
  n = theta.shape[0]
  k = min(block, b)
  nb = -(-b // k)
  final_row = b - (nb - 1) * k
  coef_f, coef_m = _mix_coefficients(logits)  # (C, L), (C, N, L)
  if chunk_elements is None:
    chunk_elements = _default_chunk_elements()
  cc = _chunk_channels(c, n * nb * k * l, chunk_elements)
  n_chunks = -(-c // cc)
  cpad = n_chunks * cc - c

  def chunk(args):
    theta_c, coef_f_c, coef_m_c, m0_c, f_c = args  # f_c: (cc, K, nb, L)
    history = f_c if bptt else jax.lax.stop_gradient(f_c)
    local, starts, decay, final = _block_emas(theta_c, history, m0_c, final_row)
    out = coef_f_c[:, None, None] * f_c
    for i in range(n):  # an unrolled sum: one fused loop, no reduction
      out = out + coef_m_c[:, i, None, None] * (
        local[i] + decay[:, i, :, None, None] * starts[:, i, None]
      )
    return out, final

  def chunked(x):  # (C, ...) -> (n_chunks, cc, ...)
    x = jnp.pad(x, ((0, cpad),) + ((0, 0),) * (x.ndim - 1))
    return x.reshape((n_chunks, cc) + x.shape[1:])

  fc = jnp.pad(f, ((0, 0), (0, cpad), (0, 0)))
  fc = _blocked(fc, k).reshape(n_chunks, cc, k, nb, l)
  args = (
    chunked(theta.T),
    chunked(coef_f),
    chunked(coef_m),
    chunked(jnp.swapaxes(m0, 0, 1)),
    fc,
  )
  if n_chunks == 1:
    out, final = chunk(tuple(a[0] for a in args))
    out, final = out[None], final[None]
  else:
    out, final = jax.lax.map(jax.checkpoint(chunk), args)
  # (n_chunks, cc, K, nb, L) -> (B, C, L)
  out = jnp.transpose(out, (3, 2, 0, 1, 4)).reshape(nb * k, n_chunks * cc, l)
  final = jnp.swapaxes(final.reshape(n_chunks * cc, n, l)[:c], 0, 1)
  return out[:b, :c], final


METHODS = ("auto", "closed", "scan")


# "auto" uses the closed form only for B <= 16 with C < 64, the scan otherwise.
# Measured on CPU (benchmarks/micro/bsa_cost.py, forward + backward,
# L = 96, N = 3, median of 21 interleaved rounds, with the channel-chunked
# scan): the closed form was 25-35% faster at B = 8-16 with C = 7-32 (under
# 2 ms either way), 10-25% faster at B = 24-32 with C = 21 and 10% faster at
# B = 8 with C = 64; the scan was faster at B >= 24 with C = 7, at B >= 64
# with C = 21, at B >= 16 with C >= 64 and for every B with C >= 128 (2x at
# B = 16 and 3-4x at B = 32-96 with C = 321). The scan's memory was at most
# 15% above the closed form's (B = 32, C = 7-64) and far below it for longer
# batches (0.5 GB vs 12 GB at B = 1024, C = 321).
_AUTO_CLOSED_MAX_BATCH = 16
_AUTO_CLOSED_MAX_CHANNELS = 63


def _resolve_method(method: str, batch: int, channels: int) -> str:
  """The method "auto" stands for at these static sizes."""
  if method != "auto":
    return method
  if batch <= _AUTO_CLOSED_MAX_BATCH and channels <= _AUTO_CLOSED_MAX_CHANNELS:
    return "closed"
  return "scan"


@functools.partial(jax.jit, static_argnums=(5, 6))
def _batched_core(logits, theta, ema, initialized, x, bptt, method):
  """One BSA call: (outputs, new EMA state); jitted as one program."""
  f = x.astype(jnp.float32)
  m0 = jnp.where(initialized, ema, jax.lax.stop_gradient(f[0])[None])
  if method == "closed":
    emas, final = _unrolled_emas(theta, f, m0, bptt)  # (B, N, C, L)
    out = _mix(logits, f, emas)
  else:
    out, final = _scan_mix(logits, theta, f, m0, bptt)
  return out.astype(x.dtype), jax.lax.stop_gradient(final)
