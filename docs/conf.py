"""Sphinx configuration of the grokfast_jax documentation.

Build (from the repository root, after ``pip install -e ".[dev,docs]"``):

  .venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html

Warnings are errors (``-W``) and ``nitpicky`` is on, so a broken internal
reference (a ``:func:`` / ``:class:`` / ``:mod:`` role, a ``{doc}`` or
``{ref}``, a Markdown link to a page) fails the build. References to other
projects (JAX, Optax, Flax, NumPy, ...) are not resolved: the build uses no
intersphinx and needs no network, and ``nitpick_ignore_regex`` below lets
those names stay plain text.

At build time this file
- copies ``notebooks/*.ipynb`` to ``docs/_generated/notebooks/``, where
  myst-nb executes them (with ``GROKFAST_NOTEBOOK_SMOKE=1``: the notebooks'
  small settings, as in ``tests/test_notebooks.py``; set it to 0 for the
  full runs), and
- copies ``benchmarks/results/*`` to ``docs/benchmarks/results/`` (the
  recorded runs that ``benchmarks/README.md`` links), and
- draws ``docs/_generated/spectrum.png`` with ``docs/_scripts/spectrum_figure.py``.
None of these is committed (``.gitignore``), nor are autosummary's stub pages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
GENERATED = DOCS / "_generated"
sys.path.insert(0, str(ROOT))

import grokfast_jax  # noqa: E402

# The notebooks' small settings (see tests/test_notebooks.py); the kernels
# myst-nb starts inherit this environment.
os.environ.setdefault("GROKFAST_NOTEBOOK_SMOKE", "1")
os.environ.setdefault("GROKFAST_JAX_NO_COMPILE_CACHE", "1")

project = "grokfast_jax"
author = "grokfast_jax developers"
copyright = "grokfast_jax developers, Apache-2.0"
release = version = grokfast_jax.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "myst_nb",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb",
                 ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "_scripts", "**/.ipynb_checkpoints",
                    "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# -- Warnings: broken internal references are errors -----------------------

nitpicky = True
# Names of other packages (and typing's) that autodoc writes into signatures
# and that no inventory resolves offline: plain text, not errors.
_EXTERNAL = (r"(jax|jaxlib|jnp|np|numpy|optax|flax|nnx|orbax|ocp|chex|"
             r"matplotlib|typing|typing_extensions|collections|os|pathlib|"
             r"argparse|dataclasses|enum|abc|builtins|types|scipy)(\..*)?")
nitpick_ignore_regex = [
    ("py:.*", _EXTERNAL),
    # Builtins and typing names as autodoc and napoleon write them.
    ("py:.*", r"(Any|Callable|Iterable|Iterator|Mapping|MutableMapping|"
              r"Sequence|Optional|Union|Literal|NamedTuple|TypeVar|Path|"
              r"PathLike|Array|ArrayLike|PyTree|DTypeLike|Shape|"
              r"GradientTransformation|GradientTransformationExtraArgs|"
              r"Schedule|ScalarOrSchedule|Params|Updates|OptState|"
              r"ndarray|Namespace|ArgumentParser|Figure|Axes|Mesh|"
              r"NamedSharding|PartitionSpec|Module|Rngs|Variable|Param|"
              r"State|GraphDef|int|float|bool|str|bytes|dict|list|tuple|"
              r"set|frozenset|object|type|None|NoneType|callable|"
              r"ValueError|TypeError|RuntimeError|KeyError|Exception|"
              r"optional|function)"),
]

# -- autodoc / autosummary / napoleon --------------------------------------

autosummary_generate = True
autosummary_ignore_module_all = False
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
python_use_unqualified_type_names = True
autodoc_preserve_defaults = True
# Aliases kept by name in signatures instead of expanded into their unions
# (the modules use `from __future__ import annotations`, so autodoc sees the
# annotation as written).
autodoc_type_aliases = {
    "_common.ScalarOrSchedule": "ScalarOrSchedule",
    "ScalarOrSchedule": "ScalarOrSchedule",
    "npt.ArrayLike": "ArrayLike",
    "jax.typing.ArrayLike": "ArrayLike",
}
autoclass_content = "class"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# Args and Attributes as plain lists, so that the docstrings' grouped entries
# ("lookback, horizon: shapes.") read as written instead of being split into
# a type and a name.
napoleon_use_param = False
napoleon_use_keyword = False
napoleon_custom_sections = [("Attributes", "params_style")]

# -- MyST and myst-nb ------------------------------------------------------

myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "auto"        # run notebooks that have no outputs
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
nb_output_stderr = "remove"       # library warnings (tqdm, JAX) are not content

# -- HTML ------------------------------------------------------------------

html_theme = "sphinx_book_theme"
html_title = f"grokfast_jax {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    "show_toc_level": 2,
    "home_page_in_toc": True,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "navigation_with_keys": False,
    # One search field, in the sidebar (the header's would repeat it).
    "navbar_persistent": [],
}
html_last_updated_fmt = None
html_show_sourcelink = False


# -- Build-time files --------------------------------------------------------

_SMOKE_NOTE = (
    "```{note}\n"
    "This page was executed when the documentation was built, with "
    "`GROKFAST_NOTEBOOK_SMOKE=1`: the notebook's tiny settings (p = 11, "
    "40 updates, a one-block model of width 32), so that the build stays "
    "short. Its outputs show that the code runs, not the paper's result; "
    "the measured runs are in [Modular arithmetic]"
    "(../../reproductions/modular.md). Run the notebook yourself (or build "
    "with `GROKFAST_NOTEBOOK_SMOKE=0`) for the full settings.\n"
    "```")


def _copy_notebooks() -> None:
  """Copies the notebooks for myst-nb, with a note on the small settings."""
  import json
  out = GENERATED / "notebooks"
  out.mkdir(parents=True, exist_ok=True)
  for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
    nb = json.loads(path.read_text())
    if os.environ.get("GROKFAST_NOTEBOOK_SMOKE") == "1":
      nb["cells"].insert(1, {"cell_type": "markdown", "metadata": {},
                             "source": _SMOKE_NOTE})
    text = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    target = out / path.name
    if not target.exists() or target.read_text() != text:
      target.write_text(text)


def _copy_benchmark_results() -> None:
  # benchmarks/README.md links its recorded runs (results/*.jsonl); the page
  # that includes it sits in docs/benchmarks/, so they go beside it.
  out = DOCS / "benchmarks" / "results"
  out.mkdir(exist_ok=True)
  for path in sorted((ROOT / "benchmarks" / "results").glob("*")):
    if path.is_file():
      shutil.copyfile(path, out / path.name)


def _spectrum_figure() -> None:
  script = DOCS / "_scripts" / "spectrum_figure.py"
  png = GENERATED / "spectrum.png"
  if png.exists() and png.stat().st_mtime >= script.stat().st_mtime:
    return
  GENERATED.mkdir(parents=True, exist_ok=True)
  subprocess.run([sys.executable, str(script), str(png)], check=True,
                 cwd=ROOT)


# -- Resolving the docstrings' short references ------------------------------

def _public_path(target: str) -> str:
  """``a._b.C`` -> ``a.C``: objects are documented where they are exported."""
  return ".".join(p for p in target.split(".")
                  if not (p.startswith("_") and not p.startswith("__")))


def _resolve_short_reference(app, env, node, contnode):
  """Resolves a py reference that names its target by a unique suffix.

  The docstrings write ``:func:`harness.train``` or ``:class:`Program```
  relative to the package they live in, and autodoc writes annotations with
  private module paths (``..._modules.SpectralAttention``); the objects are
  documented under their public paths. A reference that matches no
  documented object, or several, is still reported (and fails the build).
  """
  if node.get("refdomain") != "py":
    return None
  domain = env.get_domain("py")
  target = node["reftarget"].lstrip(".~")
  for name in dict.fromkeys((target, _public_path(target))):
    objtypes = domain.objtypes_for_role(node["reftype"]) or []
    matches = [o for o, entry in domain.objects.items()
               if (o == name or o.endswith("." + name))
               and entry.objtype in objtypes and not entry.aliased]
    if len(matches) == 1:
      entry = domain.objects[matches[0]]
      from sphinx.util.nodes import make_refnode
      return make_refnode(app.builder, node["refdoc"], entry.docname,
                          entry.node_id, contnode, matches[0])
  return None


def _dataclass_signature(app, what, name, obj, options, signature,
                         return_annotation):
  """A dataclass's signature as its fields, with plain defaults only.

  The generated ``__init__`` of a dataclass shows annotations as strings and
  defaults as reprs of functions (``<function Context.<lambda>>``); its
  Attributes section describes the fields, so the signature only lists
  them.
  """
  import dataclasses
  if what not in ("class", "exception"):
    return None
  if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)):
    return None
  params = []
  for field in dataclasses.fields(obj):
    if not field.init:
      continue
    default = field.default
    if default is dataclasses.MISSING:
      params.append(field.name if field.default_factory is dataclasses.MISSING
                    else f"{field.name}=...")
    elif isinstance(default, (bool, int, float, str, type(None), tuple)):
      params.append(f"{field.name}={default!r}")
    else:
      params.append(f"{field.name}=...")
  return f"({', '.join(params)})", None


def _skip_member(app, what, name, obj, skip, options):
  """Members autodoc would document from a class body, but whose docs are
  the class's Attributes section: NamedTuple fields ("Alias for field number
  N") and class attributes whose value is another class (a dataclass field
  ``parse: Callable = str`` would read "alias of str")."""
  doc = getattr(obj, "__doc__", None) or ""
  if isinstance(obj, property) or type(obj).__name__ == "_tuplegetter":
    if doc.startswith("Alias for field number"):
      return True
  if what == "class" and isinstance(obj, type) and obj.__name__ != name:
    return True
  return None


def _check_api_pages(app) -> None:
  """Warns (an error under -W) about a public name no API page lists.

  The experiment modules are documented whole (automodule ``:members:``);
  the library's names are listed one by one in docs/api/*.md.
  """
  import importlib
  import re
  from sphinx.util import logging
  pages = "".join(p.read_text() for p in (DOCS / "api").glob("*.md"))
  listed = set(re.findall(r"^\s+([A-Za-z_][\w.]*)\s*$", pages, re.M))
  listed |= set(re.findall(r"auto\w+:: ([\w.]+)", pages))
  for modname in ("grokfast_jax", "grokfast_jax.spectral_attention"):
    for name in importlib.import_module(modname).__all__:
      if name not in listed:
        logging.getLogger(__name__).warning(
            "%s.%s is public (__all__) but no page of docs/api/ lists it",
            modname, name)


def setup(app):
  app.connect("builder-inited", _check_api_pages)
  _copy_notebooks()
  _copy_benchmark_results()
  _spectrum_figure()
  app.connect("missing-reference", _resolve_short_reference)
  app.connect("autodoc-process-signature", _dataclass_signature)
  app.connect("autodoc-skip-member", _skip_member)
