"""ATSO, asynchronous teacher-student optimization (Algorithm 1 of the paper).

The reference set R is split into K subsets (K = 2 in the paper). Generation t ingests
``R_g{t-1}`` per view and trains one model per subset from scratch (K x views trainings,
independent of each other), each of which predicts all of R and E. ``R_g{t}`` labels subset j
with the fusion over all views of the models that never saw subset j: no model labels a case it
was trained on. Two ways to train the subset models (``method_options.atso.subset_training``;
identical for K = 2):

- ``crossfit`` (default): model k trains on S + (R without R_k) and labels R_k. Each model sees
  (K-1)/K of R: the paper's "more subsets" option, its fix for each model seeing only half of R.
- ``disjoint``: model k trains on S + R_k; R_j is labelled by the vote of all the other models.

Scores per generation: each model fused over views on each subset (Table 4's M_t^(k) @ R^(j)),
``R_g{t}`` (updated R_t), the label-free agreement of the models on each subset, and M_t @ E,
which is (``test_model``):

- ``combined`` (default): the paper's M_t: a model trained from scratch on S + all of R with the
  labels of round t, ``R_g{t-1}`` (the labels generation t's subset models train on; Algorithm 1,
  line 8, had the loop stopped at t). M_1 learns from M0's labels, like STSO's first student.
- ``ensemble`` (cheaper): the vote of the K subset models of generation t over all views.

Label rounds: ``R_g0`` (M0's) is round 1, ``R_g{t}`` round t + 1. With the defaults ATSO's final
model is M_T, trained on round T like the final models of STSO and self-learning after T
generations (like-for-like; the subset models of generation T would only make labels nobody
trains on, so they are not trained). ``final_labels``:

- ``previous`` (default): the final model learns from ``R_g{T-1}`` (round T; Algorithm 1 line 8);
- ``last``: from ``R_g{T}``, one fold swap after the last generation (round T + 1: one label round
  more than the other methods get in T generations).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from atso_nnunet.methods.base import Method, fusion_words, register, views_words
from atso_nnunet.schedule.artefacts import Ingested, LabelSet
from atso_nnunet.schedule.vocabulary import model_name, pseudo_label_set
from atso_nnunet.schedule.step import FuseGroup, ReportCell


@dataclass(frozen=True)
class AtsoOptions:
    """``method_options.atso`` of a plan (see the module docstring)."""

    test_model: str = field(default="combined", metadata={"choices": ("combined", "ensemble")})
    final_labels: str = field(default="previous", metadata={"choices": ("previous", "last")})
    subset_training: str = field(default="crossfit", metadata={"choices": ("crossfit", "disjoint")})


@register
class ATSO(Method):
    name = "atso"
    word = "ATSO"
    summary = ("asynchronous teacher-student (the paper's method): K models on reference subsets, "
               "each subset pseudo-labelled by the models that never saw it")
    how_evaluated = ("@R scores the fold-swapped pseudo-labels R_t; Table 4 scores each subset model on each "
                     "subset. The final model, trained on S + all of R, is scored at the end.")
    uses_subsets = True
    options_cls = AtsoOptions

    def describe(self, plan) -> str:
        o = self.options(plan)
        test = ("M_t on E (t >= 1) is the combined model of generation t, trained from scratch on S + all of R "
                f"with the labels of round t (the paper's M_t), {views_words(plan.views, plan.fusion)}"
                if o.test_model == "combined" else
                f"M_t on E (t >= 1) is the {fusion_words(plan.fusion)} "
                "of the ensemble of the subset models M_t^(k) over all views "
                "(not the paper's M_t, which is a model trained on S + all of R: use test_model 'combined')")
        final = ("R_T (one fold swap after the last generation)" if o.final_labels == "last"
                 else "R_{T-1} (the labels generation T trained on, Algorithm 1 line 8)")
        K = plan.subsets
        subsets = ("" if K == 2 else f" With K = {K} subsets, model k trains on "
                   + ("S + R without R_k and labels R_k." if o.subset_training == "crossfit"
                      else f"S + R_k; R_j is labelled by the {fusion_words(plan.fusion)} of the other models."))
        single = (" With one generation and these options no subset model is trained: the final model learns "
                  "from M0's labels, as STSO's first student does; ATSO's fold swap needs generations >= 2."
                  if plan.generations == 1 and self._subset_generations(1, o) == 0 else "")
        return f"{test}; {self.how_evaluated} The final model is trained on labels {final}.{subsets}{single}"

    def plan_problems(self, values):
        problems = super().plan_problems(values)
        options = ((values.get("method_options") or {}).get(self.name) or {})
        if values.get("ship_generation", "last") != "last" and options.get("test_model") == "ensemble":
            problems.append("ship_generation: ATSO with method_options.atso.test_model 'ensemble' has no single model "
                            "for a generation before T (its M_t is a vote of subset models), so only 'last' can be "
                            "shipped; use test_model 'combined' (the default) or ship_generation 'last'")
        return problems

    def generation_model(self, plan, t: int):
        """M_t: the combined model of generation t (t < T), the final model at T; None with
        ``test_model`` ``ensemble`` (M_t is then a vote of the subset models, not one model)."""
        if 0 < t < plan.generations:
            return None if self.options(plan).test_model == "ensemble" else f"g{t}_comb"
        return super().generation_model(plan, t)

    def final_label_round(self, plan) -> int:
        return plan.generations + (1 if self.options(plan).final_labels == "last" else 0)

    def _crossfit(self, b) -> bool:
        return len(b.split) > 2 and self.options(b.plan).subset_training == "crossfit"

    def training_subset(self, b, k: int):
        """Reference cases model k of a generation trains on."""
        if self._crossfit(b):
            return tuple(sorted(c for j, part in enumerate(b.split, 1) if j != k for c in part))
        return b.split[k - 1]

    def labellers(self, b, j: int, models):
        """The models whose predictions label subset j: those that never saw it."""
        if self._crossfit(b):
            return [models[j - 1]]
        return [m for k, m in enumerate(models, 1) if k != j]

    def _subset_generations(self, T: int, o: AtsoOptions) -> int:
        """Generations whose subset models are trained: the last one only when its labels are used
        (``final_labels`` ``last``) or it is the scored model (``ensemble``)."""
        return T if o.final_labels == "last" or o.test_model == "ensemble" else T - 1

    def add_generations(self, b) -> None:
        o = self.options(b.plan)
        T = b.plan.generations
        for t in range(1, T + 1):
            if t <= self._subset_generations(T, o):
                self._generation(b, t, o)
            if o.test_model == "combined" and not (t == T and o.final_labels == "previous"):
                self._combined(b, t)
        self._final_model(b, o)

    def _ingest(self, b, t: int, labels: LabelSet, prefix: str) -> None:
        for v in b.views:
            if not b.produced(Ingested(labels, v)):
                b.ingest(prefix, t, labels, v, b.R)

    def _generation(self, b, t: int, o: AtsoOptions) -> None:
        prefix, labels = f"g{t}", pseudo_label_set(t - 1)
        K = len(b.split)
        models = [model_name(t, k) for k in range(1, K + 1)]
        self._ingest(b, t, labels, prefix)
        for k, model in enumerate(models, 1):
            for v in b.views:
                b.train(prefix, t, model, v, role="student", train_cases=self.training_subset(b, k), labels=labels,
                        subset=k)
        for model in models:
            b.predict_all_views(prefix, t, model, parts="R" if o.test_model == "combined" else "RE")
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
        # Fold swap: subset j is labelled by the models that never saw it.
        groups = [FuseGroup(part, tuple(p for m in self.labellers(b, j, models) for p in b.view_predictions(m, "R")))
                  for j, part in enumerate(b.split, 1)]
        b.fuse(f"{prefix}/fuse/{pseudo_label_set(t).name}", t, pseudo_label_set(t), "pseudo_label", groups)
        b.score_pseudo_labels(prefix, t)
        if o.test_model == "ensemble":
            ensemble = [p for m in models for p in b.view_predictions(m, "E")]
            b.score_on_test(prefix, t, f"g{t}_ens", cells=[ReportCell(t, "test")], predictions=ensemble)

    def _combined(self, b, t: int) -> None:
        """The paper's M_t: S + all of R with the labels of round t (``R_g{t-1}``), from scratch, scored on E."""
        prefix, labels, model = f"g{t}", pseudo_label_set(t - 1), f"g{t}_comb"
        self._ingest(b, t, labels, prefix)
        for v in b.views:
            b.train(prefix, t, model, v, role="combined", train_cases=b.R, labels=labels)
        b.predict_all_views(prefix, t, model, parts="E")
        b.score_on_test(prefix, t, model, cells=[ReportCell(t, "test")])

    def _final_model(self, b, o: AtsoOptions) -> None:
        T = b.plan.generations
        tf = T + 1
        labels = pseudo_label_set(T if o.final_labels == "last" else T - 1)
        self._ingest(b, tf, labels, "final")
        for v in b.views:
            b.train("final", tf, "final", v, role="final", train_cases=b.R, labels=labels)
        b.predict_all_views("final", tf, "final", parts="E")
        cells = [ReportCell(tf, "final")]
        if o.test_model == "combined" and o.final_labels == "previous":
            cells.insert(0, ReportCell(T, "test"))  # M_T, the combined model of generation T, is the final model
        b.score_on_test("final", tf, "final", cells=cells)

    def final_model(self, plan) -> str:
        return "final"

