"""Runs read back from the store: ``queries`` fetches them, ``stats`` decides what to show and
aggregates. The terminal's tables are the CLI's (``regfw.cli.format``)."""
