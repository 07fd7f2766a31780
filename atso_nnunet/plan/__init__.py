"""Experiment plans: the JSON files under ``plans/<dataset>/<split>.json``, typed and validated at load.

- :mod:`~atso_nnunet.plan.fields`: the plan file's keys in order, old key names, allowed values.
- :mod:`~atso_nnunet.plan.schema`: :class:`ExperimentPlan` and :func:`plan_problems`, its complete check.
- :mod:`~atso_nnunet.plan.sections`: one dataclass per section (:class:`NetworkSection`,
  :class:`TrainingSection`, :class:`SyntheticSpec`, :class:`CaseRule`), each checking its entries.
- :mod:`~atso_nnunet.plan.training`: :class:`TrainingSettings`, the one list of training settings
  (shared with the trainers' run config).
- :mod:`~atso_nnunet.plan.validate` and :mod:`~atso_nnunet.plan.cases`: the checks, every problem
  listed at once, each naming its field's path.
- :mod:`~atso_nnunet.plan.load`: JSON -> plan (the old ``schedule`` key is read as ``training``),
  overrides, differences between plans.
- :mod:`~atso_nnunet.plan.catalog`: the packaged plans.
- :mod:`~atso_nnunet.plan.splits`: reference split, case rules, the plan against its sources.
- :mod:`~atso_nnunet.plan.from_dataset`: a plan for a team's own nnU-Net dataset.

Nothing here imports nnU-Net, torch, SimpleITK or submitit.
"""
from atso_nnunet.plan.catalog import available_plans, find_plan, plans_root
from atso_nnunet.plan.from_dataset import plan_from_dataset, read_case_list, write_plan, write_plan_from_dataset
from atso_nnunet.plan.fields import CONFIGURATIONS, KEY_ORDER, METRICS, SETS
from atso_nnunet.plan.load import load_plan, plan_changes, plan_from_dict, with_overrides
from atso_nnunet.plan.schema import REQUIRED_KEYS, ExperimentPlan, plan_problems, source_dir
from atso_nnunet.plan.sections import CaseRule, NetworkSection, SyntheticSpec, TrainingSection
from atso_nnunet.plan.splits import (apply_case_rule, contiguous_folds, dataset_problems, reference_subsets,
                                     resolve_case_rule, resolved, split_reference, validate_against_dataset)
from atso_nnunet.plan.training import TRAINING_KEYS, TrainingSettings

__all__ = [
    "CONFIGURATIONS", "KEY_ORDER", "METRICS", "REQUIRED_KEYS", "SETS", "TRAINING_KEYS",
    "CaseRule", "ExperimentPlan", "NetworkSection", "SyntheticSpec", "TrainingSection", "TrainingSettings",
    "apply_case_rule", "available_plans", "contiguous_folds", "dataset_problems", "find_plan", "load_plan",
    "plan_changes", "plan_from_dataset", "plan_from_dict", "plan_problems", "plans_root", "read_case_list",
    "reference_subsets", "resolve_case_rule", "resolved", "source_dir", "split_reference",
    "validate_against_dataset", "with_overrides", "write_plan", "write_plan_from_dataset",
]
