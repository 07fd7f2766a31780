"""Comparisons of methods over seeds: the runs (methods x seeds), the tables and figure, publishing."""
