"""Subcommands of ``govpipe``; one module each, discovered by ``pipeline.cli``."""
