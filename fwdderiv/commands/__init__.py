"""Subcommands of the ``fwdderiv`` command line, and the options and notice they share
with the command line's driver (:mod:`fwdderiv.cli`)."""
from ._common import (add_download_option, add_progress_options,  # noqa: F401
                      first_run_notice_after)
