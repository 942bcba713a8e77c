"""sparkamp jobs: config, session, tables, the CLI, and one module per job."""
