"""The ``engine`` subcommands, one module per group: each adds its parser
(``add_parser`` / ``add_parsers``) and runs it from the parsed arguments.
Engine modules are imported inside the functions, so ``--help`` starts fast."""
