"""The package's layout: light top-level import, no import cycle, no shadowing.

Like optax, the implementation modules are private (``filters/_ema.py``...)
and every public name is re-exported by its package, so no function may
share its name with a module it would hide.
"""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "grokfast_jax"

# Heavy dependencies of the experiments and the NNX modules, never of the
# Optax library that `import grokfast_jax` loads.
HEAVY = ("flax", "orbax", "matplotlib", "tqdm")


def test_import_grokfast_jax_loads_no_heavy_dependency():
  code = ("import json, sys, grokfast_jax\n"
          "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                        text=True, cwd=ROOT, check=False, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  loaded = set(json.loads(proc.stdout.strip().splitlines()[-1]))
  assert "grokfast_jax" in loaded and "optax" in loaded
  assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


# --- import graph -------------------------------------------------------------


def module_files(package_dir: Path) -> dict[str, Path]:
  """Dotted name -> file of every module of the package (`__init__` too)."""
  modules = {}
  for path in sorted(package_dir.rglob("*.py")):
    parts = path.relative_to(package_dir.parent).with_suffix("").parts
    if parts[-1] == "__init__":
      parts = parts[:-1]
    modules[".".join(parts)] = path
  return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
  """The module of the package that `name` (a dotted name) stands for."""
  while name and name not in modules:
    name = name.rpartition(".")[0]
  return name or None


def import_graph(package_dir: Path) -> dict[str, set[str]]:
  """Module -> the modules of the same package it imports (anywhere in it).

  ``import a.b.c`` and ``from a.b import c`` depend on module ``a.b.c`` if it
  exists, else on ``a.b`` (a package stands for its ``__init__``); relative
  imports are resolved against the importing module's package.
  """
  modules = module_files(package_dir)
  graph = {}
  for name, path in modules.items():
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]
    deps = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      targets = []
      if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom):
        if node.level:
          base = here
          for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
          base = ".".join(p for p in (base, node.module) if p)
        else:
          base = node.module or ""
        targets = [f"{base}.{alias.name}" if alias.name != "*" else base
                   for alias in node.names]
      for target in targets:
        dep = _resolve(target, modules)
        if dep is not None and dep != name:
          deps.add(dep)
    graph[name] = deps
  return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """A cycle [m0, m1, ..., m0] of the directed graph, or None."""
  done, on_path, path = set(), set(), []

  def visit(node):
    path.append(node)
    on_path.add(node)
    for dep in sorted(graph.get(node, ())):
      if dep in on_path:
        return path[path.index(dep):] + [dep]
      if dep not in done:
        cycle = visit(dep)
        if cycle:
          return cycle
    on_path.discard(path.pop())
    done.add(node)
    return None

  for node in sorted(graph):
    if node not in done:
      cycle = visit(node)
      if cycle:
        return cycle
  return None


def _write(root: Path, files: dict[str, str]) -> Path:
  for rel, text in files.items():
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)
  return root / "pkg"


def test_cycle_detector_finds_cycles_through_every_kind_of_import(tmp_path):
  pkg = _write(tmp_path, {
      "pkg/__init__.py": "from pkg.sub import f\nimport numpy\n",
      "pkg/sub/__init__.py": "from ._impl import f\n",
      "pkg/sub/_impl.py": "def f():\n  from .. import helpers\n",
      "pkg/helpers.py": "import pkg.sub._impl as impl\n",
      "pkg/other.py": "from pkg import sub\nfrom .sub import f\n",
  })
  graph = import_graph(pkg)
  assert graph == {
      "pkg": {"pkg.sub"},
      "pkg.sub": {"pkg.sub._impl"},
      "pkg.sub._impl": {"pkg.helpers"},   # inside a function, relative
      "pkg.helpers": {"pkg.sub._impl"},
      "pkg.other": {"pkg.sub"},           # `f` is no module: the package
  }
  cycle = find_cycle(graph)
  assert cycle[0] == cycle[-1] and len(cycle) == 3
  assert set(cycle) == {"pkg.helpers", "pkg.sub._impl"}
  (pkg / "helpers.py").write_text("import numpy\n")
  assert find_cycle(import_graph(pkg)) is None


def test_package_has_no_import_cycle():
  graph = import_graph(PACKAGE)
  assert "grokfast_jax.filters._ema" in graph["grokfast_jax.filters"]
  cycle = find_cycle(graph)
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


# --- shadowing ----------------------------------------------------------------


def shadowed(package: str) -> list[str]:
  """Submodules of `package` hidden by a package attribute of the same name."""
  pkg = importlib.import_module(package)
  found = []
  for info in pkgutil.iter_modules(pkg.__path__):
    module = importlib.import_module(f"{package}.{info.name}")
    attr = getattr(pkg, info.name, module)
    if attr is not module:
      found.append(f"{package}.{info.name} is {attr!r}, not the module")
  return found


def test_shadowing_check_finds_a_function_named_like_its_module(
    tmp_path, monkeypatch):
  _write(tmp_path, {
      "shadowpkg/__init__.py": ("from shadowpkg.loss import loss\n"
                                "from shadowpkg._impl import impl\n"),
      "shadowpkg/loss.py": "def loss():\n  pass\n",
      "shadowpkg/_impl.py": "def impl():\n  pass\n",
  })
  monkeypatch.syspath_prepend(str(tmp_path))
  assert [s.split(" is ")[0] for s in shadowed("shadowpkg")] == [
      "shadowpkg.loss"]
  for name in [m for m in sys.modules if m.split(".")[0] == "shadowpkg"]:
    monkeypatch.delitem(sys.modules, name)


def _packages() -> list[str]:
  return sorted(name for name, path in module_files(PACKAGE).items()
                if path.name == "__init__.py")


@pytest.mark.parametrize("package", _packages())
def test_no_submodule_is_shadowed_by_another_attribute(package):
  """`grokfast_jax.losses.stablemax` once named a function, hiding the module."""
  assert not shadowed(package)
