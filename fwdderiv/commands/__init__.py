"""Subcommands of the ``fwdderiv`` command line, and the options, parser and notice they
share with the command line's driver (:mod:`fwdderiv.cli`)."""
from ._common import (USAGE, CommandParser, add_dataset_option,  # noqa: F401
                      add_download_option, add_progress_options, first_run_notice_after)
