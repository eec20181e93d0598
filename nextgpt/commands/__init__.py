"""Subcommand modules: every module in this package registers its commands with ``nextgpt.cli.command``.

Adding a command = adding a module here; ``nextgpt.cli`` imports them all when it builds the parser.
"""
