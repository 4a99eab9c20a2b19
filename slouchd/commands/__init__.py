"""One module per group of ``slouchd`` subcommands; each has ``register(subparsers)``."""
