"""The steps behind report: a page's inputs gathered in Spark."""
