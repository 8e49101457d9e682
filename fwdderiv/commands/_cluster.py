"""``--workers``, ``--scheduler`` and ``--shard-size``: the options of the commands that
run shard by shard on a Dask cluster (:mod:`fwdderiv.distributed`)."""
from ._common import positive_int


def add_cluster_options(p, shard_help=None):
    """Give ``p`` ``--workers N`` or ``--scheduler ADDRESS`` (one of them) and, unless
    ``shard_help`` is None (a command whose tasks are fixed), ``--shard-size N``
    (``shard_help``: what a shard holds by default)."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--workers", type=positive_int, default=None, metavar="N",
                       help="run shard by shard on a local Dask cluster of N worker "
                            "processes (needs fwdderiv[distributed]); the results equal "
                            "those without it")
    group.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run shard by shard on an existing Dask cluster, given its "
                            "scheduler's address (tcp://host:8786)")
    if shard_help is None:
        return p
    p.add_argument("--shard-size", type=positive_int, default=None, metavar="N",
                   help=f"examples per shard ({shard_help})")
    return p


def sharded(args):
    """Whether the command runs on a cluster (``--workers`` or ``--scheduler``)."""
    return args.workers is not None or args.scheduler is not None


def cluster_kwargs(args):
    """``workers``, ``scheduler`` and ``shard_size`` for :mod:`fwdderiv.distributed`."""
    return {"workers": args.workers, "scheduler": args.scheduler,
            "shard_size": args.shard_size}


def where_run(args):
    """Where the shards run, in words."""
    if args.workers is not None:
        return f"a local Dask cluster of {args.workers} worker processes"
    if args.scheduler is not None:
        return f"the Dask cluster at {args.scheduler}"
    return "this process"
