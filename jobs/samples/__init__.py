"""Packaged demo and test data written as files, and the demo's plan."""
