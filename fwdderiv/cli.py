"""The ``fwdderiv`` command line. Each subcommand lives in ``fwdderiv/commands/<name>.py``
and exposes ``add_parser(subparsers)`` and ``run(args) -> int``."""
import argparse
import importlib
import sys

#: Subcommands in the order ``--help`` lists them.
COMMANDS = ["reproduce", "jacobian", "train", "robustness"]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fwdderiv",
        description="Forward derivatives (input Jacobians dF/dx) of neural networks, layer by "
                    "layer, after Papernot et al., 'The Limitations of Deep Learning in "
                    "Adversarial Settings' (EuroS&P 2016).",
        epilog="Run 'fwdderiv COMMAND --help' for the options of a command.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"fwdderiv.commands.{name}").add_parser(sub)
    return parser


def main(argv=None):
    from .process import tune_process
    tune_process()          # a program of fwdderiv's own: the process-wide tuning pays
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as err:
        print(f"fwdderiv {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fwdderiv {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
