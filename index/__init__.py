"""FAISS indexes: choosing, training, sharding, merging, searching and the manifest (no Spark here)."""
