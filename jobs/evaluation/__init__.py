"""The steps behind evaluate: retrieval and classification metrics against gold labels."""
