"""Labeled-only training: M0 on S, nothing else (the paper's "naive baseline")."""
from __future__ import annotations

from atso_nnunet.methods.base import Method, register


@register
class Supervised(Method):
    name = "supervised"
    summary = "labeled-only baseline: nnU-Net trained on the labeled set S (generation 0 only)"
    how_evaluated = "M0 trained on the labeled set only, {views}."
    needs_reference = False
    min_generations = 0
    max_generations = 0
    word = "labeled-only"
    comparison_role = "baseline"
    line_label = "labeled-only (M0)"
    line_style = "--"

    def add_generations(self, b) -> None:
        """Nothing after generation 0."""

    def final_model(self, plan) -> str:
        return "M0"
