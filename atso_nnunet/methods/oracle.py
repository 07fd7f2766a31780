"""The fully supervised upper bound: S + R with R's *true* labels (research plans only).

After the shared generation 0, generation 1 ingests the reference set's ground truth
(``labelsRef``) per view and trains ``oracle`` from scratch on S + R, with the same trainer and
sampling as every student; it predicts E and is scored. It is the ceiling every semi-supervised
result is read against (the paper: 85.04 fully supervised vs 72.62 labeled-only at 10%). A plan
whose reference cases lack ground truth is refused before any work.
"""
from __future__ import annotations

from typing import List

from atso_nnunet.data import layout
from atso_nnunet.methods.base import Method, register
from atso_nnunet.schedule.artefacts import GroundTruth
from atso_nnunet.schedule.step import ReportCell


@register
class Oracle(Method):
    name = "oracle"
    comparison_role = "bound"
    line_label = "oracle (S + R true labels)"
    line_style = "-."
    summary = "upper bound: nnU-Net trained on S + R with R's true labels (needs labelsRef; research only)"
    how_evaluated = ("The oracle is trained on S + all of R with R's ground truth (an upper bound no team "
                     "without labels can reach); G0 is the labeled-only M0.")
    min_generations = 1
    max_generations = 1

    def default_generations(self) -> int:
        return 1

    def final_label_round(self, plan) -> int:
        return 0            # true labels, no pseudo-labels

    def add_generations(self, b) -> None:
        truth = GroundTruth()
        for v in b.views:
            b.ingest("g1", 1, truth, v, b.R)
        for v in b.views:
            b.train("g1", 1, "oracle", v, role="oracle", train_cases=b.R, labels=truth)
        b.predict_all_views("g1", 1, "oracle", parts="E")
        b.score_on_test("g1", 1, "oracle", cells=[ReportCell(1, "test"), ReportCell(2, "final")])

    def final_model(self, plan) -> str:
        return "oracle"

    def dataset_problems(self, dataset_dir, plan) -> List[str]:
        missing = [c for c in plan.reference if not layout.label_path(dataset_dir, layout.LABELS_REF, c).exists()]
        if missing:
            return [f"method 'oracle' trains on the reference set's true labels, but {len(missing)} reference "
                    f"case(s) have no ground truth in {dataset_dir / layout.LABELS_REF}: {', '.join(missing[:10])}"
                    f"{' ...' if len(missing) > 10 else ''}. The oracle is for research plans whose reference "
                    "cases are labeled; use another method for unlabeled data."]
        return []
