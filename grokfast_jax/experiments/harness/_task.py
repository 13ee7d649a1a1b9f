"""What a task supplies to the harness: a :class:`Task` and, per run, a
:class:`Program`.

A task is only what is its own: its config (a frozen dataclass whose fields
define its command-line flags, see :mod:`._flags`), its data loading, and for
each run a :class:`Program` (initial state, the pure epoch and evaluation
functions, the history entries), plus its figures and one-line summary. The
harness (:func:`~grokfast_jax.experiments.harness.train`) supplies, once for
every task, the compiled chunked loop, the evaluation schedule, progress,
history, checkpoints and resume, meshes, ``results.json`` and the plots.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional, Sequence

History = list[dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Context:
  """Where a run runs; given to ``Task.build``.

  Attributes:
    mesh: the device mesh, or None for one device.
    layout: "none", "dp" (params replicated) or "fsdp" (params split).
    place_params: puts a params tree on the mesh by `layout` (identity
      without a mesh); the optimizer state made by ``tx.init`` of placed
      params follows them.
    place_data: puts host arrays on the devices, replicated (every process
      passes the same full arrays).
    shard_batch: constrains a batch array (leading axis = examples) to be
      split over the mesh's devices inside a jitted function (identity
      without a mesh).
    devices: the number of devices in the mesh (1 without one).
  """

  mesh: Any = None
  layout: str = "none"
  place_params: Callable[[Any], Any] = lambda tree: tree
  place_data: Callable[[Any], Any] = lambda tree: tree
  shard_batch: Callable[[Any], Any] = lambda x: x
  devices: int = 1


@dataclasses.dataclass
class Program:
  """One run as the harness trains it.

  Every function here is pure and traced by the harness inside one jitted,
  donated chunk: ``lax.scan`` over evaluation periods, each a ``lax.scan``
  of `train_epoch` over `epochs_per_eval` epochs followed by `evaluate`.

  Attributes:
    state: the initial training state, any pytree of arrays (params,
      optimizer state, PRNG keys...). It is what checkpoints hold.
    data: device arrays the functions read (passed as jit arguments, not
      closed over).
    train_epoch: ``(state, epoch, data) -> (state, metrics)``: one epoch;
      `epoch` is the traced int32 epoch number, 1 for the first; `metrics`
      a dict of scalars (may be empty). A task builds it from its pure
      per-update function ``update(state, batch) -> (state, metrics)``.
    evaluate: ``(state, data) -> (state, metrics)`` after each period (the
      state may change, e.g. to keep the best params); None: nothing.
    entry: ``(epoch_metrics, eval_metrics) -> dict``: the task's keys of
      the history entry of one evaluation (the harness adds ``step``,
      ``epoch`` and ``seconds``). `epoch_metrics` holds each epoch metric
      stacked over the period's epochs (numpy), `eval_metrics` floats.
    total_epochs: epochs of the whole run.
    steps_per_epoch: optimizer updates an epoch.
    epochs_per_eval: epochs between evaluations.
    evals_per_chunk: evaluation periods per jitted call (more: fewer
      dispatches; the run may only stop at a chunk's end, so keep 1 when
      `should_stop` matters).
    initial_eval: also evaluate before training (a history entry at step 0,
      made by `initial_entry`).
    initial_entry: ``(state, data) -> dict`` for the step-0 entry.
    should_stop: ``history -> bool``: end the run early (checked after each
      chunk); None: run `total_epochs`.
    keep: ``epoch -> bool``: whether the evaluation after `epoch` goes into
      the history (every one still goes into `curves`); None: all.
    curve_keys: keys of the entries whose every value is kept, as float32
      arrays, in the run's `curves` (for thinned histories).
    info: extra facts for the task's summarizer (n_params, ...).
  """

  state: Any
  data: Any
  train_epoch: Callable[[Any, Any, Any], tuple[Any, dict[str, Any]]]
  evaluate: Optional[Callable[[Any, Any], tuple[Any, dict[str, Any]]]]
  # (epoch metrics, None at an initial evaluation; evaluations) -> entry
  entry: Callable[[Any, Mapping[str, float]], dict[str, Any]]
  total_epochs: int
  steps_per_epoch: int
  epochs_per_eval: int = 1
  evals_per_chunk: int = 1
  initial_eval: bool = False
  initial_entry: Optional[Callable[[Any, Any], dict[str, Any]]] = None
  should_stop: Optional[Callable[[History], bool]] = None
  keep: Optional[Callable[[int], bool]] = None
  curve_keys: Sequence[str] = ()
  info: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Run:
  """A finished run.

  Attributes:
    results: the JSON-ready results (harness keys + the task's figures).
    state: the final training state.
    history: the (kept) history entries.
    curves: key -> float32 array of every evaluation (`Program.curve_keys`).
  """

  results: dict[str, Any]
  state: Any
  history: History
  curves: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Flag:
  """A command-line flag that is not a config field.

  Attributes:
    name: the flag, e.g. ``--betas``.
    dest: the key its value takes in the given settings.
    help: its help text.
    parse: converts its text.
    metavar: the value's name in the help.
    compare: a flag of the comparison.
    single: a flag of the single-run subcommand.
    switch: takes no value: True when given (absent otherwise).
  """

  name: str
  dest: str
  help: str = ""
  parse: Callable[[str], Any] = str
  metavar: Optional[str] = None
  compare: bool = True
  single: bool = True
  switch: bool = False


@dataclasses.dataclass(frozen=True)
class Task:
  """A task of the command line and the harness.

  Attributes:
    name: its subcommand (``grokfast-jax NAME``).
    compare_name: the subcommand of its comparison (``NAME-compare``).
    help, description: the subcommands' texts (single run).
    compare_help, compare_description: the comparison's texts.
    config_class: the frozen dataclass whose fields are its flags.
    make_config: ``(given) -> config`` from the flags the user gave (a dict
      of field -> value, absent when not given), applying its defaults
      (e.g. per filter) and validating (ValueError naming the argument).
    load_data: ``config -> data`` (files, featurization), shared by the runs
      of a comparison; None: the task needs no data.
    build: ``(config, data, Context) -> Program``.
    summarize: ``(config, data, run_facts) -> dict``: the task's figures
      for results.json; `run_facts` has the history, curves, program info
      and timings (see the harness).
    describe: ``results -> str``: one honest line.
    plan_compare: ``(given) -> [(folder, run name, config), ...]``: the
      runs of the comparison from the flags given.
    summarize_compare: ``(runs: {name: results}) -> (lines, extra)``: the
      comparison's printed lines and extra results keys.
    title: ``(config, what) -> str``: plot title.
    plots: ``[(file, metric, ylabel, log_y)]`` curves written per run.
    default_out / compare_out: default ``--out`` folders.
    checkpoint_settings: ``config -> dict``: what a checkpoint stores and a
      resume compares (default: every field of the config).
    mesh_ok: whether its batches can be split over devices.
    extra_files: ``(out_dir, run) -> [paths]``: files a run writes beside
      results.json (e.g. full loss curves).
    run_label: ``config -> str``: a single run's name (default its
      ``run_name``).
    announce: ``(config, data) -> [lines]`` printed before training.
    extra_flags: flags that are not config fields (:class:`Flag`); their
      values join the given settings under their `dest`.
    custom_run: ``(task, given, options) -> exit status``: replaces the
      single-run flow of the subcommand (a task with stages of its own, as
      forecasting); `options` is the harness's :class:`~._cli.Options`.
    build_member: ``(config, data, Context, names) -> Program`` for a sweep
      (``_sweep.py``): the run of `config` with the float settings `names`
      held in its state (``optax.inject_hyperparams``), so that runs
      differing only in seed and those settings share their functions;
      None: the task has no sweep.
    sweep_floats: the float settings a sweep's grid may vary.
    sweep_metric: the results key a sweep's summary gives the median and
      range of (e.g. the updates to a target).
  """

  name: str
  config_class: type
  make_config: Callable[[Mapping[str, Any]], Any]
  build: Callable[[Any, Any, Context], Program]
  summarize: Callable[[Any, Any, Mapping[str, Any]], dict[str, Any]]
  describe: Callable[[Mapping[str, Any]], str]
  help: str = ""
  description: str = ""
  compare_name: Optional[str] = None
  compare_help: str = ""
  compare_description: str = ""
  load_data: Optional[Callable[[Any], Any]] = None
  plan_compare: Optional[
    Callable[[Mapping[str, Any]], list[tuple[str, str, Any]]]
  ] = None
  summarize_compare: Optional[
    Callable[
      [Mapping[str, Mapping[str, Any]]], tuple[list[str], dict[str, Any]]
    ]
  ] = None
  title: Callable[[Any, str], str] = lambda cfg, what: what
  plots: Sequence[tuple[str, str, str, bool]] = (
    ("curves.png", "acc", "accuracy", False),
  )
  default_out: str = "runs/run"
  compare_out: str = "runs/compare"
  checkpoint_settings: Optional[Callable[[Any], dict[str, Any]]] = None
  mesh_ok: bool = True
  extra_files: Optional[Callable[[Any, Run], list[Any]]] = None
  run_label: Callable[[Any], str] = lambda cfg: getattr(cfg, "run_name", "run")
  announce: Optional[Callable[[Any, Any], list[str]]] = None
  extra_flags: Sequence[Flag] = ()
  custom_run: Optional[Callable[[Any, dict[str, Any], Any], int]] = None
  build_member: Optional[
    Callable[[Any, Any, Context, tuple[str, ...]], Program]
  ] = None
  sweep_floats: Sequence[str] = ()
  sweep_metric: str = ""
