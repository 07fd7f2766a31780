"""``ATSOSemiTrainer``: nnU-Net training on the labeled set plus pseudo-labelled reference cases.

The run config (:mod:`atso_nnunet.nnunet.trainers.config`: ``pseudo_label_dir``, optional
``pseudo_label_cases`` and ``labeled_fraction``) names a folder of pseudo-labels in the original
image geometry. The trainer brings them into its view's preprocessed space with
:func:`atso_nnunet.pseudolabels.ingest.ingest_pseudolabels` (a no-op when the driver ingested them
already; a hand run with ``nnUNetv2_train ... -tr ATSOSemiTrainer`` ingests on first use) and
overrides one hook, ``get_tr_and_val_datasets``:

- training: :class:`SemiSupervisedDataset`, nnU-Net's labeled cases plus the pseudo-labelled
  ones (image from ``atso_unlabeled/<data_identifier>``, target and ``class_locations`` from the
  ingestion cache). nnU-Net's loader draws cases uniformly over both (as in the paper);
  ``labeled_fraction`` instead fixes the labeled share of every batch (:class:`FixedFractionDataLoader`).
- validation: nnU-Net's own split of the *labeled* cases only. Pseudo-labels and test cases are
  never validated on. With the default fold ``all`` nnU-Net validates on its training cases, so
  the per-epoch pseudo dice and the final validation measure the fit to the labeled set S
  (not generalisation); use a numbered fold for a held-out labeled validation split.

Works for any view (plans) and any configuration with a single stage (``2d``, ``3d_fullres``);
cascades are refused (pseudo-labelled cases have no previous-stage segmentation).
"""
from __future__ import annotations

import os
import pickle
from typing import List, Sequence

import numpy as np
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter

from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class, nnUNetBaseDataset
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA

from atso_nnunet.errors import InputError
from atso_nnunet.paths import NnUNetPaths
from atso_nnunet.pseudolabels.ingest import IngestResult, ingest_pseudolabels
from atso_nnunet.nnunet.trainers.base import ATSOTrainer


class SemiSupervisedDataset(nnUNetBaseDataset):
    """nnU-Net's labeled training dataset plus pseudo-labelled cases, dispatched per identifier.

    Args:
        labeled: nnU-Net's training dataset (its ``identifiers`` are the labeled training cases).
        image_folder: folder of the pseudo-labelled cases' preprocessed images (``<case>.b2nd``).
        label_folder: ingestion cache with ``<case>_seg.b2nd`` and ``<case>.pkl``.
        pseudo_identifiers: the pseudo-labelled cases.

    Attributes:
        labeled_identifiers: labeled cases, sorted.
        pseudo_identifiers: pseudo-labelled cases, sorted.
        identifiers: both (what nnU-Net's loader samples from).
    """

    def __init__(self, labeled: nnUNetBaseDataset, image_folder: os.PathLike, label_folder: os.PathLike,
                 pseudo_identifiers: Sequence[str]):
        clash = sorted(set(labeled.identifiers) & set(pseudo_identifiers))
        if clash:
            raise InputError(f"pseudo-labelled cases {clash} are also labeled training cases")
        self.labeled = labeled
        self.image_folder = str(image_folder)
        self.label_folder = str(label_folder)
        self.labeled_identifiers = sorted(labeled.identifiers)
        self.pseudo_identifiers = sorted(pseudo_identifiers)
        self._pseudo = frozenset(self.pseudo_identifiers)
        super().__init__(labeled.source_folder, self.labeled_identifiers + self.pseudo_identifiers,
                         labeled.folder_with_segs_from_previous_stage)
        # as nnUNetDatasetBlosc2 (nnunetv2 2.8.1): one blosc2 thread; mmap does not work on Windows
        import blosc2

        blosc2.set_nthreads(1)
        self._mmap_kwargs = {} if os.name == "nt" else {"mmap_mode": "r"}

    def is_pseudo(self, identifier: str) -> bool:
        return identifier in self._pseudo

    def load_case(self, identifier):
        """``(data, seg, seg_prev, properties)`` as nnU-Net's datasets return them."""
        if identifier not in self._pseudo:
            return self.labeled.load_case(identifier)
        import blosc2

        dparams = {"nthreads": 1}
        data = blosc2.open(urlpath=os.path.join(self.image_folder, identifier + ".b2nd"), mode="r",
                           dparams=dparams, **self._mmap_kwargs)
        seg = blosc2.open(urlpath=os.path.join(self.label_folder, identifier + "_seg.b2nd"), mode="r",
                          dparams=dparams, **self._mmap_kwargs)
        with open(os.path.join(self.label_folder, identifier + ".pkl"), "rb") as f:
            properties = pickle.load(f)
        return data, seg, None, properties

    @staticmethod
    def save_case(data, seg, properties, output_filename_truncated):
        raise NotImplementedError("SemiSupervisedDataset is read-only")

    @staticmethod
    def get_identifiers(folder: str) -> List[str]:
        raise NotImplementedError("SemiSupervisedDataset is built from datasets, not from a folder")


class FixedFractionDataLoader(nnUNetDataLoader):
    """nnU-Net's loader drawing a fixed share of every batch from the labeled cases.

    ``labeled_fraction * batch_size`` samples come from labeled cases (the fractional part is
    rounded at random, so the share is exact on average), the rest from pseudo-labelled cases,
    each drawn uniformly with replacement; their order in the batch is shuffled so nnU-Net's
    foreground oversampling (last samples of a batch) treats both alike.
    """

    def __init__(self, data: SemiSupervisedDataset, *args, labeled_fraction: float, **kwargs):
        super().__init__(data, *args, **kwargs)
        self.labeled_fraction = float(labeled_fraction)

    def get_indices(self):
        data: SemiSupervisedDataset = self._data
        exact = self.labeled_fraction * self.batch_size
        n_labeled = int(np.floor(exact)) + int(np.random.uniform() < exact - np.floor(exact))
        if not data.pseudo_identifiers:
            n_labeled = self.batch_size
        keys = list(np.random.choice(data.labeled_identifiers, n_labeled, replace=True)) + \
            list(np.random.choice(data.pseudo_identifiers, self.batch_size - n_labeled, replace=True))
        np.random.shuffle(keys)
        return keys


class ATSOSemiTrainer(ATSOTrainer):
    """:class:`ATSOTrainer` whose training set is S plus the run config's pseudo-labelled cases.

    Attributes:
        pseudo_labels: the :class:`~atso_nnunet.pseudolabels.ingest.IngestResult` in use (after
            ``get_tr_and_val_datasets``).
    """

    pseudo_labels: IngestResult = None

    def ingest_pseudo_labels(self) -> IngestResult:
        """Ingest (or reuse) the run config's pseudo-labels for this trainer's plans and configuration.

        Raises:
            InputError: no ``pseudo_label_dir`` in the run config, a cascade configuration, or a
                pseudo-label folder refused by the ingestion checks.
        """
        cfg = self.run_config
        if not cfg.pseudo_label_dir:
            raise InputError(f"{self.__class__.__name__} needs pseudo-labels: set ATSO_PSEUDOLABELS=<folder> "
                             "(or pseudo_label_dir in ATSO_RUN_CONFIG); for labeled data only use ATSOTrainer")
        if self.is_cascaded:
            raise InputError(f"{self.__class__.__name__} does not support cascade configurations "
                             f"({self.configuration_name}); use 2d or 3d_fullres")
        return ingest_pseudolabels(NnUNetPaths.from_env(), self.plans_manager.dataset_name,
                                   self.plans_manager.plans_name, self.configuration_name,
                                   cfg.pseudo_label_dir, cfg.pseudo_label_cases)

    def get_tr_and_val_datasets(self):
        dataset_tr, dataset_val = super().get_tr_and_val_datasets()
        self.pseudo_labels = result = self.ingest_pseudo_labels()
        dataset_tr = SemiSupervisedDataset(dataset_tr, result.image_dir, result.cache_dir, result.cases)
        fraction = self.run_config.labeled_fraction
        sampling = (f"labeled fraction {fraction} per batch" if fraction is not None
                    else "uniform over all training cases")
        self.print_to_log_file(
            f"ATSO semi-supervised training set: {len(dataset_tr.labeled_identifiers)} labeled + "
            f"{len(result.cases)} pseudo-labelled case(s) ({len(result.empty_cases)} empty pseudo-label(s)"
            f"{': ' + ', '.join(result.empty_cases) if result.empty_cases else ''}); sampling {sampling}; "
            f"pseudo-labels from {self.run_config.pseudo_label_dir} (cache {result.cache_dir})")
        self.print_to_log_file(
            f"ATSO validation set: {len(dataset_val.identifiers)} labeled case(s) only"
            + (" (fold 'all': the labeled training cases)" if self.fold == "all" else ""))
        return dataset_tr, dataset_val

    def get_dataloaders(self):
        if self.run_config.labeled_fraction is None:
            return super().get_dataloaders()
        return self._get_dataloaders_fixed_fraction(self.run_config.labeled_fraction)

    def _get_dataloaders_fixed_fraction(self, labeled_fraction: float):
        # Copy of nnUNetTrainer.get_dataloaders (nnunetv2 2.8.1); the only change: the training
        # loader is a FixedFractionDataLoader. nnU-Net offers no hook for the loader class.
        # tests/nnunet/test_upstream_copies.py fails when the upstream source changes: re-copy then.
        if self.dataset_class is None:
            self.dataset_class = infer_dataset_class(self.preprocessed_dataset_folder)
        patch_size = self.configuration_manager.patch_size
        deep_supervision_scales = self._get_deep_supervision_scales()
        (rotation_for_DA, do_dummy_2d_data_aug, initial_patch_size,
         mirror_axes) = self.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        regions = self.label_manager.foreground_regions if self.label_manager.has_regions else None
        tr_transforms = self.get_training_transforms(
            patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes, do_dummy_2d_data_aug,
            use_mask_for_norm=self.configuration_manager.use_mask_for_norm,
            is_cascaded=self.is_cascaded, foreground_labels=self.label_manager.foreground_labels,
            regions=regions, ignore_label=self.label_manager.ignore_label)
        val_transforms = self.get_validation_transforms(
            deep_supervision_scales, is_cascaded=self.is_cascaded,
            foreground_labels=self.label_manager.foreground_labels, regions=regions,
            ignore_label=self.label_manager.ignore_label)

        dataset_tr, dataset_val = self.get_tr_and_val_datasets()
        dl_tr = FixedFractionDataLoader(dataset_tr, self.batch_size, initial_patch_size,
                                        self.configuration_manager.patch_size, self.label_manager,
                                        oversample_foreground_percent=self.oversample_foreground_percent,
                                        sampling_probabilities=None, pad_sides=None, transforms=tr_transforms,
                                        probabilistic_oversampling=self.probabilistic_oversampling,
                                        labeled_fraction=labeled_fraction)
        dl_val = nnUNetDataLoader(dataset_val, self.batch_size, self.configuration_manager.patch_size,
                                  self.configuration_manager.patch_size, self.label_manager,
                                  oversample_foreground_percent=self.oversample_foreground_percent,
                                  sampling_probabilities=None, pad_sides=None, transforms=val_transforms,
                                  probabilistic_oversampling=self.probabilistic_oversampling)
        allowed_num_processes = get_allowed_n_proc_DA()
        if allowed_num_processes == 0:
            mt_gen_train = SingleThreadedAugmenter(dl_tr, None)
            mt_gen_val = SingleThreadedAugmenter(dl_val, None)
        else:
            mt_gen_train = NonDetMultiThreadedAugmenter(data_loader=dl_tr, transform=None,
                                                        num_processes=allowed_num_processes,
                                                        num_cached=max(6, allowed_num_processes // 2), seeds=None,
                                                        pin_memory=self.device.type == 'cuda', wait_time=0.002)
            mt_gen_val = NonDetMultiThreadedAugmenter(data_loader=dl_val, transform=None,
                                                      num_processes=max(1, allowed_num_processes // 2),
                                                      num_cached=max(3, allowed_num_processes // 4), seeds=None,
                                                      pin_memory=self.device.type == 'cuda', wait_time=0.002)
        _ = next(mt_gen_train)
        _ = next(mt_gen_val)
        return mt_gen_train, mt_gen_val
