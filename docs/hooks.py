"""Build hooks of the fwdderiv documentation (mkdocs ``hooks:``).

Three things the site needs that are not hand-written pages:

- **MathJax 3, shipped with the site.** The npm packages in ``docs/package.json``
  (MathJax and the ``iframe-worker`` shim that lets the search run from ``file://``) are
  installed into ``docs/node_modules`` (``npm ci --prefix docs``; the build runs it
  itself when the folder is missing) and their files are added to the site, so formulas
  and search work with no network.
- **The API reference**, one page per public subpackage or module, listing every name of
  its ``__all__`` (read at run time, so a new public name appears without editing the
  docs); mkdocstrings renders each from its docstring.
- **The command-line reference**, generated from ``fwdderiv.cli.build_parser()``: every
  command in ``fwdderiv.cli.COMMANDS`` with the text of its own ``--help``.
"""
import importlib
import inspect
import logging
import os
import pkgutil
import shutil
import subprocess
import sys
import types
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
NODE_MODULES = DOCS / "node_modules"

#: npm files copied into the site: (package folder, files or folders inside it, where
#: they go under the site root). Only MathJax's CHTML build with its fonts and the
#: components it loads on demand (TeX extensions, the menu, assistive MathML).
ASSETS = [
    ("mathjax/es5", ["tex-mml-chtml.js", "input", "output/chtml", "ui", "a11y", "adaptors"],
     "javascripts/mathjax"),
    ("iframe-worker/shim", ["index.js"], "javascripts/iframe-worker"),
]
#: Where the pages load MathJax from (relative to the site root; see mkdocs.yml).
MATHJAX_SCRIPT = "javascripts/mathjax/tex-mml-chtml.js"


log = logging.getLogger("mkdocs.hooks.fwdderiv")


# ---------------------------------------------------------------------------------------
# npm assets
# ---------------------------------------------------------------------------------------

def _ensure_node_modules():
    missing = [pkg for pkg, _, _ in ASSETS if not (NODE_MODULES / pkg).exists()]
    if not missing:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise PluginError(
            f"docs: {', '.join(missing)} not found under {NODE_MODULES} and npm is not "
            "installed; install Node.js (npm), then run: npm ci --prefix docs")
    log.info("docs: installing MathJax from npm (npm ci --prefix docs)")
    run = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--prefix", str(DOCS)],
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise PluginError(f"docs: 'npm ci --prefix docs' failed:\n{run.stdout}{run.stderr}")


def _asset_files(config):
    """Files of ASSETS as mkdocs File objects (copied to the site like static files)."""
    files = []
    for pkg, members, dest in ASSETS:
        base = NODE_MODULES / pkg
        for member in members:
            src = base / member
            paths = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
            if not paths:
                raise PluginError(f"docs: {src} is missing; run: npm ci --prefix docs")
            for path in paths:
                rel = path.relative_to(base).as_posix()
                files.append(File.generated(config, f"{dest}/{rel}",
                                            abs_src_path=str(path)))
    return files


# ---------------------------------------------------------------------------------------
# API reference
# ---------------------------------------------------------------------------------------

def _import_package():
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module("fwdderiv")


def public_modules():
    """``{module name: [public names]}`` for the API reference, in page order.

    Every non-private subpackage or module of fwdderiv that declares ``__all__`` (not
    the submodules of a package that does: the package's ``__all__`` is its public
    surface), and every top-level module (``fwdderiv.numeric``, ``fwdderiv.testing``,
    ...) without one, whose public names are then the functions and classes defined in
    it. Names that are themselves modules are left out (they have pages of their own).
    """
    pkg = _import_package()
    found = {}
    for info in pkgutil.walk_packages(pkg.__path__, "fwdderiv."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        parent = info.name.rsplit(".", 1)[0]
        if parent != "fwdderiv" and parent in found:
            continue                       # submodule of a documented package
        mod = importlib.import_module(info.name)
        names = getattr(mod, "__all__", None)
        if names is None and parent == "fwdderiv" and not info.ispkg:
            names = [n for n, v in vars(mod).items() if not n.startswith("_")
                     and (inspect.isfunction(v) or inspect.isclass(v))
                     and v.__module__ == info.name]
        if names is None:
            continue
        found[info.name] = [n for n in names
                            if not isinstance(getattr(mod, n), types.ModuleType)]
    return found


def _page_name(module):
    return "api/" + module.split(".", 1)[1].replace(".", "-") + ".md"


def _module_page(module, names):
    mod = importlib.import_module(module)
    summary = (inspect.getdoc(mod) or "").split("\n\n")[0]
    lines = [f"# `{module}`", "", summary, "",
             "Names: " + ", ".join(f"[`{n}`](#{module}.{n})" for n in names), ""]
    for n in names:
        lines += [f"::: {module}.{n}", ""]
    return "\n".join(lines)


def _index_page(modules):
    pkg = _import_package()
    lines = ["# API reference", "",
             "Every public name of fwdderiv, rendered from its docstring (numpydoc) with "
             "its signature and source. One page per subpackage or module; the pages are "
             "generated from each module's `__all__` when the documentation is built.", "",
             "| module | public names |", "|---|---|"]
    for module, names in modules.items():
        lines.append(f"| [`{module}`]({_page_name(module)[4:]}) | "
                     + ", ".join(f"[`{n}`]({_page_name(module)[4:]}#{module}.{n})"
                                 for n in names) + " |")
    # The top-level names re-export objects documented on a subpackage's page.
    where = {}
    for module, names in modules.items():
        mod = importlib.import_module(module)
        for n in names:
            where.setdefault(id(getattr(mod, n)), (module, n))
    lines += ["", "## Top-level names", "",
              "`import fwdderiv as fd` gives these names directly:", "",
              "| name | documented as |", "|---|---|"]
    undocumented = []
    for n in pkg.__all__:
        obj = getattr(pkg, n)
        if isinstance(obj, types.ModuleType):
            target = (obj.__name__, None) if obj.__name__ in modules else None
        else:
            target = where.get(id(obj))
        if target is None:
            undocumented.append(n)
            continue
        module, name = target
        link = _page_name(module)[4:] + (f"#{module}.{name}" if name else "")
        label = f"{module}.{name}" if name else module
        lines.append(f"| `fd.{n}` | [`{label}`]({link}) |")
    if undocumented:
        raise PluginError(f"docs: fwdderiv.__all__ names {undocumented} are on no API "
                          "page; give the module that defines them an __all__")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# Command-line reference
# ---------------------------------------------------------------------------------------

def _help_text(parser):
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "88"          # argparse wraps at the terminal width
    try:
        return parser.format_help()
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before


def cli_page():
    """Markdown of the command-line reference: ``--help`` of fwdderiv and every command."""
    _import_package()
    cli = importlib.import_module("fwdderiv.cli")
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    lines = ["# Command-line reference", "",
             "Generated from the command line's own `--help` when the documentation is "
             "built, so it matches the installed version. Every command accepts "
             "`--progress` / `--no-progress` (bars are shown only on a terminal unless "
             "asked for) and prints errors as one line on standard error with a non-zero "
             "exit status. [Installation and first steps](install.md) explains the data "
             "and cache directories the commands use.", "",
             "## fwdderiv", "", "```text", _help_text(parser).rstrip(), "```", ""]
    for name in cli.COMMANDS:
        lines += [f"## fwdderiv {name}", "", "```text",
                  _help_text(sub.choices[name]).rstrip(), "```", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# mkdocs events
# ---------------------------------------------------------------------------------------

def on_config(config):
    modules = public_modules()
    api = [{"Overview": "api/index.md"}]
    api += [{module: _page_name(module)} for module in modules]
    config.nav.append({"API reference": api})
    return config


def on_files(files, config):
    _ensure_node_modules()
    for f in _asset_files(config):
        files.append(f)
    modules = public_modules()
    files.append(File.generated(config, "api/index.md", content=_index_page(modules)))
    for module, names in modules.items():
        files.append(File.generated(config, _page_name(module),
                                    content=_module_page(module, names)))
    files.append(File.generated(config, "cli.md", content=cli_page()))
    return files
