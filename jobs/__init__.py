"""sparkamp's jobs: one module per job and the CLI at the top; the machinery they share in sub-packages
(ARCHITECTURE.md maps them)."""

# every job, by its command name (`sparkamp <job>`), and the module that runs it
JOBS = {
    "embed-images": "jobs.embed_images",
    "embed-texts": "jobs.embed_texts",
    "build-index": "jobs.build_index",
    "search": "jobs.search",
    "dedup": "jobs.dedup",
    "unique": "jobs.unique",
    "assign-labels": "jobs.assign_labels",
    "evaluate": "jobs.evaluate",
    "report": "jobs.report",
    "demo": "jobs.demo",
    "serve": "jobs.serve",
}
