"""Pandas UDFs and the pure batch functions behind them: decoding, CNN and text embedding, model cache."""
