"""Shared job machinery: config, session, summaries, input-location rules, the config reference."""
