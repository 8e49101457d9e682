"""Every number the docs quote about the reproductions is generated: it is marked with the
key it comes from in a committed JSON file, and it equals that entry as printed. The
files: ``docs/data/reproduction.json`` (written by ``python -m benchmarks.reproduction``;
keys ``RUN.…`` and ``paper.…``) and ``docs/data/robustness-mnist.json`` (the
``robustness.json`` of the ``fwdderiv robustness`` run the Jacobian-regularisation page
names; keys ``robustness.…``) and ``docs/data/robustness-mnist-5000.json`` (the same on
5,000 training images; keys ``robustness_5000.…``). Between the markers
``<!-- generated numbers -->`` and ``<!-- end generated numbers -->`` every number must
carry such a mark, so a number typed by hand cannot slip into those passages."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = json.loads((ROOT / "docs" / "data" / "reproduction.json").read_text())
#: Key prefix -> the robustness.json of a ``fwdderiv robustness`` run the docs quote.
ROBUSTNESS = {prefix: json.loads((ROOT / "docs" / "data" / name).read_text())
              for prefix, name in (("robustness", "robustness-mnist.json"),
                                   ("robustness_5000", "robustness-mnist-5000.json"))}
PAGES = sorted((ROOT / "docs" / "pages").glob("*.md")) + [ROOT / "README.md"]

#: A quoted value and its mark: ``97.08%<!--n:mnist.success_rate-->``.
MARKED = re.compile(r"([-+]?[\d][\d,]*(?:\.\d+)?%?|\d{4}-\d\d-\d\d)<!--n:([\w.\-]+)-->")
#: Any number (what may not appear unmarked in a generated passage).
#: (Not LeNet-5's 5, nor a TeX exponent or subscript: \|J\|_F^2.)
NUMBER = re.compile(r"(?<![\w.^_])(?<!\w-)[-+]?\d[\d,]*(?:\.\d+)?%?")
REGION = re.compile(r"<!-- generated numbers -->(.*?)<!-- end generated numbers -->", re.S)


def lookup(key):
    """``mnist.success_curve.success_rate.3`` -> DATA["runs"]["mnist"][...][3];
    ``paper.success_rate`` -> DATA["paper"]["success_rate"]; ``robustness.accuracy.
    reference.0`` -> ROBUSTNESS["accuracy"]["reference"][0]. A key part may hold dots
    when it names a network (``lambda_0.1``): the longest matching name is taken."""
    parts = key.split(".")
    node = {"paper": DATA["paper"], **ROBUSTNESS}.get(parts[0])
    node = DATA["runs"][parts[0]] if node is None else node
    parts = parts[1:]
    while parts:
        if isinstance(node, list):
            node, parts = node[int(parts[0])], parts[1:]
            continue
        for n in range(len(parts), 0, -1):
            name = ".".join(parts[:n])
            if name in node:
                node, parts = node[name], parts[n:]
                break
        else:
            raise KeyError(f"no {parts[0]!r} under {key!r}")
    return node


def printed(value, like):
    """``value`` printed the way the docs print ``like``: a percentage of a fraction with
    as many decimals, an integer with thousands separators, or a plain number."""
    if isinstance(value, str):
        return value
    decimals = len(like.rstrip("%").split(".")[1]) if "." in like else 0
    if like.endswith("%"):
        return f"{100 * value:.{decimals}f}%"
    if decimals == 0:
        return f"{round(value):,}" if "," in like or abs(value) >= 1000 else f"{round(value)}"
    return f"{value:.{decimals}f}"


def marks():
    found = []
    for page in PAGES:
        for m in MARKED.finditer(page.read_text()):
            found.append((page.name, m.group(1), m.group(2)))
    return found


def test_the_pages_quote_generated_numbers():
    names = {page for page, _, _ in marks()}
    assert {"reproduce.md", "jacobian-regularization.md"} <= names
    assert len(marks()) > 30


@pytest.mark.parametrize("page, text, key", marks())
def test_a_marked_number_equals_the_generated_one(page, text, key):
    assert printed(lookup(key), text) == text, f"{page}: {text} is not {key} as generated"


def test_generated_passages_hold_no_unmarked_number():
    for page in PAGES:
        for region in REGION.findall(page.read_text()):
            bare = MARKED.sub("", region)
            bare = re.sub(r"<!--.*?-->", "", bare)
            assert not NUMBER.findall(bare), (
                f"{page.name}: numbers without a mark in a generated passage: "
                f"{NUMBER.findall(bare)[:10]}")


def test_the_json_names_the_command_that_wrote_it():
    assert DATA["generated_by"].startswith("python -m benchmarks.reproduction")
    from benchmarks.reproduction import RUNS
    assert set(DATA["runs"]) == set(RUNS)
    for name, run in DATA["runs"].items():
        assert run["command"].startswith("fwdderiv reproduce")
        assert run["n_crafted"] > 0 and 0 <= run["success_rate"] <= 1


def test_printed_formats():
    assert printed(0.97084, "97.08%") == "97.08%"
    assert printed(0.97, "97%") == "97%"
    assert printed(8838, "8,838") == "8,838"
    assert printed(0.04041, "0.0404") == "0.0404"
    assert printed("2026-12-07", "2026-12-07") == "2026-12-07"
    assert len(NUMBER.findall("Sec. V-B, 14.5% and 1,000 x 9")) == 3
    assert NUMBER.findall("LeNet-5, theta = -1") == ["-1"]


def test_the_robustness_page_claims_what_its_json_shows():
    """The comparisons docs/pages/jacobian-regularization.md states in words."""
    acc = {k: np.array(v) for k, v in ROBUSTNESS["robustness"]["accuracy"].items()}
    noise = np.array(ROBUSTNESS["robustness"]["noise"])
    norm = ROBUSTNESS["robustness"]["jacobian_norm"]
    ref, regs = acc.pop("reference"), acc
    assert set(regs) == {"lambda_0.1", "lambda_0.3", "lambda_1"}
    for name, a in regs.items():
        assert norm[name] < norm["reference"] / 100                 # far below
        assert a[0] < ref[0]                                        # a clean cost, always
        assert (a[noise <= 0.15] < ref[noise <= 0.15]).all()        # worse under light noise
    for name, start in (("lambda_0.1", 0.20), ("lambda_0.3", 0.20), ("lambda_1", 0.25)):
        better = regs[name] > ref
        assert better[noise >= start - 1e-9].all() and not better[noise < start - 1e-9].any()
    margin = regs["lambda_0.1"] - ref
    assert (np.diff(margin[noise >= 0.20]) > 0).all()               # grows with the noise
    assert (regs["lambda_0.1"] > regs["lambda_0.3"]).all()
    assert (regs["lambda_0.3"] > regs["lambda_1"]).all()
    # the hypothesis test: 5,000 images lose more clean accuracy at lambda 1, not less
    small = ROBUSTNESS["robustness_5000"]["accuracy"]
    assert small["reference"][0] - small["lambda_1"][0] > ref[0] - regs["lambda_1"][0]
