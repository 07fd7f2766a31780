"""Datasets: raw layout, input checks, synthetic CT generator, NIH / MSD converters."""
