"""ATSO, asynchronous teacher-student optimization (Algorithm 1 of the paper).

The reference set R is split into K subsets (K = 2 in the paper). Generation t ingests
``R_g{t-1}`` per view and trains one model per subset from scratch, ``g{t}_h{k}`` on S + R_k
(K x views trainings, independent of each other). Every ``g{t}_h{k}`` predicts all of R and E.
``R_g{t}`` labels subset j with the fusion over all views of the models *not* trained on
subset j (for K = 2: R_1 from ``g{t}_h2``, R_2 from ``g{t}_h1``): no model labels a case it was
trained on. Scores per generation: each model fused over views on each subset (Table 4's
M_t^(k) @ R^(j)), ``R_g{t}`` (updated R_t), the label-free agreement of the models on each
subset, and M_t @ E. After generation T, ``final`` is trained from scratch on S + all of R with
``R_g{T}`` (the last fold-swapped labels) and scored on E.
"""
from __future__ import annotations

from atso_nnunet.methods.base import Method, register
from atso_nnunet.schedule.artefacts import LabelSet, Prediction
from atso_nnunet.schedule.builder import model_name, pseudo_label_set
from atso_nnunet.schedule.step import FuseGroup, ReportCell


@register
class ATSO(Method):
    name = "atso"
    summary = ("asynchronous teacher-student (the paper's method): K models on disjoint reference subsets, "
               "each subset pseudo-labelled by the models that never saw it")
    how_evaluated = ("M_t on E (t >= 1) is the majority vote of the ensemble of the half-models M_t^(k) over all "
                     "views; @R scores the fold-swapped pseudo-labels R_t. The final model, trained on S + all of "
                     "R, is scored at the end.")
    uses_subsets = True

    def add_generations(self, b) -> None:
        for t in range(1, b.plan.generations + 1):
            self._generation(b, t)
        self._final_model(b)

    def _generation(self, b, t: int) -> None:
        prefix, labels = f"g{t}", pseudo_label_set(t - 1)
        K = len(b.split)
        models = [model_name(t, k) for k in range(1, K + 1)]
        for v in b.views:
            b.ingest(prefix, t, labels, v, b.R)
        for k, model in enumerate(models, 1):
            for v in b.views:
                b.train(prefix, t, model, v, role="student", train_cases=b.split[k - 1], labels=labels, subset=k)
        for model in models:
            b.predict_all_views(prefix, t, model)
        # Each model on each subset (Table 4), from its views fused over R.
        fused_r = []
        for k, model in enumerate(models, 1):
            fused = b.fuse(f"{prefix}/fuse/{model}/R", t, LabelSet(model, "R"), "reference_eval",
                           [FuseGroup(b.R, b.view_predictions(model, "R"))], model=model)
            fused_r.append(fused)
            for j, part in enumerate(b.split, 1):
                b.evaluate(prefix, t, model, fused, f"R_h{j}", part, "reference_eval", model=model, subset=j,
                           cells=[ReportCell(t, "half_model", f"M{k}@R{j}")])
        # Label-free: do the models agree on each subset?
        for j, part in enumerate(b.split, 1):
            b.monitor(prefix, t, "agreement", f"agreement_g{t}_R{j}", fused_r, part,
                      [ReportCell(t, "agreement", f"R{j}")], subset=j)
        # Fold swap: subset j is labelled by the models not trained on it.
        groups = [FuseGroup(part, tuple(p for k, m in enumerate(models, 1) if k != j
                                        for p in b.view_predictions(m, "R")))
                  for j, part in enumerate(b.split, 1)]
        b.fuse(f"{prefix}/fuse/{pseudo_label_set(t).name}", t, pseudo_label_set(t), "pseudo_label", groups)
        b.score_pseudo_labels(prefix, t)
        ensemble: list[Prediction] = [p for m in models for p in b.view_predictions(m, "E")]
        b.score_on_test(prefix, t, f"g{t}_ens", cells=[ReportCell(t, "test")], predictions=ensemble)

    def _final_model(self, b) -> None:
        T = b.plan.generations
        tf, labels = T + 1, pseudo_label_set(T)
        for v in b.views:
            b.ingest("final", tf, labels, v, b.R)
        for v in b.views:
            b.train("final", tf, "final", v, role="final", train_cases=b.R, labels=labels)
        for v in b.views:
            b.predict("final", tf, "final", v, "E", b.E)
        b.score_on_test("final", tf, "final", cells=[ReportCell(tf, "final")])

    def final_model(self, plan) -> str:
        return "final"
