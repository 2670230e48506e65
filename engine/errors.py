"""The one exception type for mistakes a user can make and fix."""


class UserError(ValueError):
    """Bad input: the CLI prints the message on one line and exits with status 2.

    The message names the thing at fault and, where there is one, the fix. A
    ``ValueError``, so Python callers of the API catch what they would from
    scikit-learn or umap-learn for a bad argument.
    """

    shared = False      # raised on every rank of a torchrun job at once (engine.distributed.Cluster.agree)
