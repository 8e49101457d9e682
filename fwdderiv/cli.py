"""The ``fwdderiv`` command line. Each subcommand lives in ``fwdderiv/commands/<name>.py``
and exposes ``add_parser(subparsers)`` and ``run(args) -> int``.

One convention for every command: a usage error (unknown option, bad value, inputs or a
model that do not fit) prints one line naming the option (argparse's errors also print the
subcommand's usage) and exits with status 2; a check that fails exits with 1; success is
0. ``--dataset`` chooses the data set (``digits``, ``mnist``, ``fashion-mnist``, ``cifar10``
or ``folder``), ``--data-dir`` says where its files are (the IDX files, CIFAR-10's binary
files, or the photo folder with one sub-folder per class).
"""
import argparse
import importlib
import sys

from fwdderiv.commands import (USAGE, CommandParser, add_dataset_option, add_download_option,
                               add_progress_options, first_run_notice_after)

#: Seconds a command runs before the first-run notice appears (when Numba has not
#: compiled the kernels yet): a command that fails its checks at once prints only its
#: error.
NOTICE_DELAY = 2.0

#: Subcommands in the order ``--help`` lists them.
COMMANDS = ["reproduce", "jacobian", "train", "attribute", "attack", "check", "robustness"]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fwdderiv",
        description="Forward derivatives (input Jacobians dF/dx) of neural networks, layer by "
                    "layer, after Papernot et al., 'The Limitations of Deep Learning in "
                    "Adversarial Settings' (EuroS&P 2016).",
        epilog="Run 'fwdderiv COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"fwdderiv {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    for name in COMMANDS:
        importlib.import_module(f"fwdderiv.commands.{name}").add_parser(sub)
        # every command alike: --progress/--no-progress, and --dataset and --download
        # beside --data-dir
        add_download_option(add_dataset_option(add_progress_options(sub.choices[name])))
    return parser


def _version():
    from fwdderiv import __version__
    return __version__


def _one_line(err):
    return " ".join(str(err).split()) or type(err).__name__


def main(argv=None, tune=None):
    """Run ``fwdderiv`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    ``tune`` applies :func:`fwdderiv.tune_process` first; by default only when ``argv``
    is None, i.e. when this is the ``fwdderiv`` program, whose process is fwdderiv's own.
    A Python caller passing ``argv`` keeps its process as it was.
    """
    if tune if tune is not None else argv is None:
        from .process import tune_process
        tune_process()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    notice = first_run_notice_after(NOTICE_DELAY)
    try:
        return int(args.run(args) or 0)
    except (ValueError, TypeError, OSError, ImportError, NotImplementedError) as err:
        # user errors (bad option values, inputs or a model that do not fit, missing or
        # unreadable files, a full disk, an operator fwdderiv cannot import): one line, no
        # traceback; OSError covers FileNotFoundError and DownloadError
        print(f"fwdderiv {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        print(f"fwdderiv {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        notice.cancel()


if __name__ == "__main__":
    sys.exit(main())
