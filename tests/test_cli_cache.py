"""The command line's persistent compilation cache."""

import json
import os
import subprocess
import sys

from grokfast_jax import cli

SMALL = ["modular", "--p", "11", "--depth", "1", "--width", "32", "--heads",
         "2", "--max-steps", "4", "--no-progress"]


def _run(tmp_path, out, *extra, cache="1"):
  env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
  env.pop(cli.CACHE_DIR_ENV, None)
  env[cli.NO_CACHE_ENV] = "" if cache == "1" else "1"
  subprocess.run([sys.executable, "-m", "grokfast_jax.cli", *SMALL, "--out",
                  str(tmp_path / out), *extra], check=True, env=env,
                 capture_output=True, text=True)
  return json.loads((tmp_path / out / "results.json").read_text())


def _entries(folder):
  return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_a_repeated_command_compiles_nothing_new(tmp_path):
  cache = tmp_path / "xdg" / "grokfast_jax" / "jax"
  first = _run(tmp_path, "a")
  stored = _entries(cache)
  assert stored, "the first run stored no compiled program"
  second = _run(tmp_path, "b")
  assert _entries(cache) == stored  # every program came from the cache
  assert second["history"] == [
      {**h, "seconds": s["seconds"]}
      for h, s in zip(first["history"], second["history"])]


def test_the_flag_turns_it_off(tmp_path):
  cache = tmp_path / "xdg" / "grokfast_jax" / "jax"
  _run(tmp_path, "a", "--no-compile-cache")
  assert not cache.exists() or not _entries(cache)


def test_cache_folder_follows_the_environment(tmp_path, monkeypatch):
  monkeypatch.delenv(cli.CACHE_DIR_ENV, raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert cli.compile_cache_dir() == tmp_path / "grokfast_jax" / "jax"
  monkeypatch.setenv(cli.CACHE_DIR_ENV, str(tmp_path / "elsewhere"))
  assert cli.compile_cache_dir() == tmp_path / "elsewhere"
  monkeypatch.setenv(cli.NO_CACHE_ENV, "1")
  assert cli.enable_compile_cache() is None
