"""The steps behind build-index, search, dedup and unique: FAISS indexes driven from Spark."""
