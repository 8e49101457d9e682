"""Subcommands of the ``fwdderiv`` command line."""
