"""The steps behind assign-labels: label sets, examples, fitting heads, scoring."""
