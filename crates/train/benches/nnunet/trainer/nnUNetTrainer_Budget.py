"""nnUNetTrainer_Budget: nnU-Net's default recipe with a configurable training length.

Installed into nnunetv2/training/nnUNetTrainer/variants/ (by /tmp/nnunet/install_trainer.sh) so that
`nnUNetv2_train ... -tr nnUNetTrainer_Budget` finds it. Source of truth: /tmp/nnunet/trainer/.

Environment:
  MEDSEG_NNUNET_EPOCHS      -> self.num_epochs                (nnU-Net default 1000)
  MEDSEG_NNUNET_ITERS       -> self.num_iterations_per_epoch  (nnU-Net default 250)
  MEDSEG_NNUNET_VAL_ITERS   -> self.num_val_iterations_per_epoch. Optional. If unset it is scaled
                               with ITERS at nnU-Net's default ratio 50/250, i.e. ceil(ITERS/5)
                               (= 50 when ITERS = 250). These per-epoch "pseudo Dice" validation
                               batches only feed the log and checkpoint_best selection; they never
                               change the weights, and checkpoint_final (what we evaluate) does not
                               depend on them. Set MEDSEG_NNUNET_VAL_ITERS=50 for the literal default.

Everything else (LR 1e-2 poly schedule over num_epochs, SGD+Nesterov, weight decay 3e-5, DiceCE with
deep supervision, augmentation, oversampling 0.33, batch/patch size from the plans) is nnU-Net's.
These attributes are plain instance attributes set in nnUNetTrainer.__init__ and only read later
(PolyLRScheduler is built in initialize() from self.num_epochs), so overriding them after
super().__init__() is the supported way (same as nnUNetTrainer_Xepochs).

In addition each epoch logs the wall time of the training and validation phases separately
("medseg_timing ..." lines) so iterations/minute can be measured without the validation overhead.
"""
import math
import os
from time import time

import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


def _env_int(name):
    v = os.environ.get(name)
    if v is None or v.strip() == '':
        return None
    v = int(v)
    if v < 1:
        raise ValueError(f'{name} must be >= 1, got {v}')
    return v


class nnUNetTrainer_Budget(nnUNetTrainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        epochs = _env_int('MEDSEG_NNUNET_EPOCHS')
        iters = _env_int('MEDSEG_NNUNET_ITERS')
        val_iters = _env_int('MEDSEG_NNUNET_VAL_ITERS')
        if epochs is None or iters is None:
            self.print_to_log_file('WARNING nnUNetTrainer_Budget: MEDSEG_NNUNET_EPOCHS/MEDSEG_NNUNET_ITERS '
                                   'not set; using nnU-Net defaults for the missing ones',
                                   also_print_to_console=True)
        if epochs is not None:
            self.num_epochs = epochs
        if iters is not None:
            self.num_iterations_per_epoch = iters
        if val_iters is not None:
            self.num_val_iterations_per_epoch = val_iters
        else:
            # keep nnU-Net's ratio of validation to training batches per epoch (50 : 250)
            self.num_val_iterations_per_epoch = max(1, math.ceil(self.num_iterations_per_epoch * 50 / 250))
        self._t_train_start = self._t_train_end = self._t_val_start = None
        self.print_to_log_file(f'nnUNetTrainer_Budget: num_epochs={self.num_epochs} '
                               f'num_iterations_per_epoch={self.num_iterations_per_epoch} '
                               f'num_val_iterations_per_epoch={self.num_val_iterations_per_epoch} '
                               f'(torch threads {torch.get_num_threads()})', also_print_to_console=True)

    # --- timing only; no behaviour change ---
    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self._t_train_start = time()

    def on_train_epoch_end(self, train_outputs):
        self._t_train_end = time()
        super().on_train_epoch_end(train_outputs)

    def on_validation_epoch_start(self):
        super().on_validation_epoch_start()
        self._t_val_start = time()

    def on_validation_epoch_end(self, val_outputs):
        t_val = time() - self._t_val_start
        super().on_validation_epoch_end(val_outputs)
        t_tr = self._t_train_end - self._t_train_start
        self.print_to_log_file(
            f'medseg_timing epoch {self.current_epoch}: train {t_tr:.2f} s for {self.num_iterations_per_epoch} it '
            f'({self.num_iterations_per_epoch / t_tr * 60:.2f} it/min, {t_tr / self.num_iterations_per_epoch:.3f} s/it), '
            f'val {t_val:.2f} s for {self.num_val_iterations_per_epoch} it; loadavg {os.getloadavg()[0]:.2f}')
