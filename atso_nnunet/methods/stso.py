"""STSO, synchronous teacher-student optimization: each student from scratch on S + all of R.

Generation t ingests ``R_g{t-1}`` per view and trains ``g{t}_all`` from scratch on S + R with
those labels; it predicts R (giving ``R_g{t}``) and E. The result is ``g{T}_all``.
"""
from __future__ import annotations

from typing import Optional

from atso_nnunet.methods.base import Method, register
from atso_nnunet.schedule.vocabulary import model_name, pseudo_label_set


@register
class STSO(Method):
    name = "stso"
    word = "STSO"
    summary = "synchronous teacher-student: every student trained from scratch on S + all of R"
    how_evaluated = "M_t on E is the {views} of the generation's model; @R scores its pseudo-labels."
    #: training role of the students (which of the plan's training settings they use)
    student_role = "student"

    def teacher_init(self, teacher: str) -> Optional[str]:
        """Model whose weights start the student (None: from scratch)."""
        return None

    def add_generations(self, b) -> None:
        teacher = "M0"
        for t in range(1, b.plan.generations + 1):
            prefix, labels, model = f"g{t}", pseudo_label_set(t - 1), model_name(t)
            for v in b.views:
                b.ingest(prefix, t, labels, v, b.R)
            for v in b.views:
                b.train(prefix, t, model, v, role=self.student_role, train_cases=b.R, labels=labels,
                        init_from=self.teacher_init(teacher))
            b.single_model_generation(prefix, t, model)
            teacher = model

    def generation_model(self, plan, t: int) -> Optional[str]:
        return "M0" if t == 0 else model_name(min(t, plan.generations))

    def final_model(self, plan) -> str:
        return model_name(plan.generations)
