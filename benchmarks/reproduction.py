"""The numbers the reproduction page quotes, generated: runs ``fwdderiv reproduce`` in the
settings the page reports and writes their headline numbers to one JSON file, with the
hardness figure beside it.

    python -m benchmarks.reproduction --data-dir ../shared/data/mnist

writes ``docs/data/reproduction.json`` and ``docs/pages/img/hardness_mnist.png``;
``tests/test_docs_numbers.py`` checks that every number the docs mark as generated
equals that file. The runs (each ``fwdderiv reproduce``, with ``--output`` in a
temporary folder):

- ``mnist``: ``--dataset mnist --samples 1000`` (the paper's attack, forward mode);
- ``digits``: the offline default (scikit-learn 8x8 digits);
- ``hardness``: ``--dataset mnist --samples 100 --mode vjp --hardness``;
- ``theta_minus``: ``--dataset mnist --samples 100 --mode vjp --theta -1``;
- ``theta_plus``: ``--dataset mnist --samples 100 --mode vjp`` (its counterpart).

About 10 minutes on two cores, most of it the forward-mode MNIST run.
"""
import argparse
import datetime
import json
import shutil
import sys
import tempfile
from pathlib import Path

from fwdderiv.cli import main as fwdderiv_main
from fwdderiv.commands.reproduce import PAPER

ROOT = Path(__file__).resolve().parents[1]
#: Where the numbers go (committed; the docs test reads it).
OUTPUT = ROOT / "docs" / "data" / "reproduction.json"
FIGURE = ROOT / "docs" / "pages" / "img" / "hardness_mnist.png"

#: run name -> arguments of ``fwdderiv reproduce`` (``--data-dir`` is added for MNIST).
RUNS = {
    "mnist": ["--dataset", "mnist", "--samples", "1000"],
    "digits": [],
    "hardness": ["--dataset", "mnist", "--samples", "100", "--mode", "vjp", "--hardness"],
    "theta_plus": ["--dataset", "mnist", "--samples", "100", "--mode", "vjp"],
    "theta_minus": ["--dataset", "mnist", "--samples", "100", "--mode", "vjp",
                    "--theta", "-1"],
}

#: The keys of ``results.json`` kept per run (per-sample outcomes and matrices stay out).
KEEP = ("config", "data_description", "architecture", "test_accuracy", "n_test",
        "n_features", "budget_features", "n_crafted", "success_rate",
        "success_rate_wilson95", "mean_distortion_all", "mean_distortion_successful",
        "success_curve", "paper_comparable", "crafting_seconds", "samples_per_second")


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.reproduction", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, metavar="DIR",
                   help="the folder with MNIST's IDX files (e.g. ../shared/data/mnist)")
    p.add_argument("--runs", default=",".join(RUNS), metavar="NAME,...",
                   help=f"which runs to (re)do; the others keep their numbers in the JSON "
                        f"(default: all of {', '.join(RUNS)})")
    p.add_argument("--output", type=Path, default=OUTPUT,
                   help="the JSON file (default: docs/data/reproduction.json)")
    return p


def command_line(name, data_dir):
    """The ``fwdderiv reproduce`` arguments of run ``name`` (without ``--output``)."""
    args = list(RUNS[name])
    if "mnist" in args:
        args += ["--data-dir", str(data_dir)]
    return args


def summarise(results, args):
    """The kept numbers of one ``results.json``, with the command that made them."""
    kept = {k: results[k] for k in KEEP if k in results}
    kept["command"] = "fwdderiv reproduce " + " ".join(args)
    if results.get("hardness"):
        kept["hardness"] = {k: v for k, v in results["hardness"].items()
                            if k not in ("success_rate", "distortion_successful")}
        kept["hardness"]["matrix"] = results["matrices"]["hardness"]
    return kept


def run_one(name, data_dir, tmp):
    """Run ``name`` into ``tmp/name``; return its summary and the output folder."""
    args = command_line(name, data_dir)
    out = Path(tmp) / name
    code = fwdderiv_main(["reproduce", *args, "--output", str(out), "--no-progress"])
    if code != 0:
        raise SystemExit(f"benchmarks.reproduction: run {name!r} failed with status {code}")
    results = json.loads((out / "results.json").read_text())
    shown = [a if a != str(data_dir) else "MNIST_DIR" for a in args]
    return summarise(results, shown), out


def main(argv=None):
    args = build_parser().parse_args(argv)
    names = [n.strip() for n in args.runs.split(",") if n.strip()]
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        raise SystemExit(f"benchmarks.reproduction: unknown run(s) {unknown}; choose from "
                         f"{list(RUNS)}")
    data = json.loads(args.output.read_text()) if args.output.exists() else {"runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            data["runs"][name], out = run_one(name, args.data_dir, tmp)
            data["runs"][name]["date"] = datetime.date.today().isoformat()
            if name == "hardness":
                FIGURE.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(out / "hardness.png", FIGURE)
    data["generated_by"] = "python -m benchmarks.reproduction --data-dir MNIST_DIR"
    data["paper"] = PAPER
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
