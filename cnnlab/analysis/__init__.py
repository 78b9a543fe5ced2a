"""Analysis: evaluation, metrics, statistics over seeds and the figures drawn from them."""
