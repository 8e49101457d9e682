"""The documentation site builds with --strict (broken links, anchors or nav fail), ships
MathJax so formulas render with no network, and its API reference covers every public
name."""
import importlib
import inspect
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
sys.path.insert(0, str(DOCS))
import hooks  # noqa: E402  (docs/hooks.py: the API page list and the MathJax location)

SCRIPT_SRC = re.compile(r'<script[^>]*\bsrc="([^"]+)"')
LINK_HREF = re.compile(r'<link[^>]*\bhref="([^"]+)"')


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(DOCS / "mkdocs.yml"),
         "-d", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    return out


def test_mkdocs_build_strict(site):
    # the offline plugin turns directory URLs off: pages are files, links work from disk
    assert (site / "layers.html").exists()
    assert (site / "search" / "search_index.js").exists()   # search index inlined


def test_math_ships_with_the_site(site):
    mathjax = site / hooks.MATHJAX_SCRIPT
    assert mathjax.stat().st_size > 100_000
    assert "MathJax" in mathjax.read_text(errors="replace")
    fonts = list((site / "javascripts/mathjax/output/chtml/fonts/woff-v2").glob("*.woff"))
    assert len(fonts) > 10
    for page in sorted(site.rglob("*.html")):
        html = page.read_text()
        scripts = SCRIPT_SRC.findall(html) + LINK_HREF.findall(html)
        remote = [s for s in scripts if re.match(r"(https?:)?//", s)]
        assert not remote, f"{page.relative_to(site)} loads {remote} from the network"
        if page.name == "404.html":
            continue
        local = [s for s in scripts if s.endswith("mathjax/tex-mml-chtml.js")]
        assert len(local) == 1, f"{page.relative_to(site)} does not load MathJax"
        # relative to the page, and the file is there
        assert (page.parent / local[0]).resolve() == mathjax.resolve()


def test_math_is_marked_for_mathjax(site):
    """Equation (5) and the other display formulas reach the page intact (inside an
    arithmatex block, backslashes kept), and no heading or sidebar entry shows TeX."""
    html = (site / "forward-derivative.html").read_text()
    blocks = re.findall(r'<div class="arithmatex">(.*?)</div>', html, re.S)
    eq5 = [b for b in blocks if r"\tag{5}" in b]
    assert len(eq5) == 1 and r"\frac{\partial H_{k,p}}{\partial x_i}" in eq5[0]
    for page in sorted(site.rglob("*.html")):
        text = page.read_text()
        for heading in re.findall(r"<h[1-6][^>]*>(.*?)</h[1-6]>", text, re.S):
            assert "\\(" not in heading and "$" not in heading, (page, heading)
        for entry in re.findall(r'class="md-nav__link"[^>]*>(.*?)</a>', text, re.S):
            assert "\\(" not in entry, (page, entry)


def test_api_reference_covers_every_public_name(site):
    modules = hooks.public_modules()
    for sub in ("fwdderiv.attacks", "fwdderiv.core", "fwdderiv.datasets", "fwdderiv.layers",
                "fwdderiv.models", "fwdderiv.training", "fwdderiv.numeric",
                "fwdderiv.testing"):
        assert sub in modules
    for module, names in modules.items():
        html = (site / hooks._page_name(module).replace(".md", ".html")).read_text()
        mod = importlib.import_module(module)
        for name in names:
            assert f'id="{module}.{name}"' in html, f"{module}.{name} missing"
            obj = getattr(mod, name)
            if callable(obj) and not isinstance(obj, types.ModuleType):
                # signature block and the source code next to the docstring
                block = html.split(f'id="{module}.{name}"', 1)[1][:20000]
                try:
                    params = inspect.signature(obj).parameters
                except (TypeError, ValueError):
                    params = {"?": None}
                if params:          # a class without __init__ arguments shows none
                    assert "doc-signature" in block, f"{module}.{name} has no signature"
                assert "Source code in" in block, f"{module}.{name} has no source"
    # every public name of every subpackage: __all__ is what the pages list
    for module, names in modules.items():
        mod = importlib.import_module(module)
        declared = getattr(mod, "__all__", names)
        assert set(names) == {n for n in declared
                              if not isinstance(getattr(mod, n), types.ModuleType)}


def test_cli_reference_lists_every_command(site):
    from fwdderiv.cli import COMMANDS, build_parser
    html = (site / "cli.html").read_text()
    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and a.choices
               and set(COMMANDS) <= set(a.choices))
    for name in COMMANDS:
        assert f'id="fwdderiv-{name}"' in html
        for action in sub.choices[name]._actions:
            for opt in action.option_strings:
                assert opt in html, f"fwdderiv {name} {opt} missing from the CLI page"
