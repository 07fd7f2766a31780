"""Self-learning: as STSO, but each student continues from its teacher's final checkpoint.

``init_from`` is M0 at t = 1, then ``g{t-1}_all``, same view. The students use the plan's
``self`` training settings (a fine-tuning schedule), so the two baselines differ the way the
paper's do.
"""
from __future__ import annotations

from typing import Optional

from atso_nnunet.methods.base import register
from atso_nnunet.methods.stso import STSO


@register
class SelfLearning(STSO):
    name = "self"
    summary = "self-learning: each student continues from its teacher's snapshot (continual learning)"
    how_evaluated = ("M_t on E is the {views} of the generation's model, which continued from "
                     "its teacher's weights; @R scores its pseudo-labels.")
    student_role = "self"
    word = "self-learning"

    def teacher_init(self, teacher: str) -> Optional[str]:
        return teacher
