"""Export the trunk (backbone + neck + decoder) of a finished pre-training for fine-tuning, and the
encoder + decoder of an MAE pre-training in MAE's layout."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch import Callback

from samrs import __version__
from samrs.errors import ConfigError
from samrs.models.mae import export_mae
from samrs.models.weights import export_pretrained, read_state_dict
from samrs.utils.logging import get_logger

log = get_logger(__name__)


class ExportPretrained(Callback):
    """At the end of training, write the trunk of the best checkpoint (`source="best"`, when there is
    one) or of the final weights (`source="last"`) to `path`, for `samrs.models.load_pretrained`."""

    label = "pre-trained weights for fine-tuning"

    def __init__(self, path: str, source: str = "best") -> None:
        if source not in ("best", "last"):
            raise ConfigError(f"ExportPretrained: source must be 'best' or 'last', got {source!r}")
        self.path, self.source = Path(path), source

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        ckpt = trainer.checkpoint_callback
        best = getattr(ckpt, "best_model_path", "") if self.source == "best" else ""
        net = pl_module.net
        meta = {
            "backbone": getattr(net.backbone, "name", type(net.backbone).__name__),
            "decoder": type(net.decoder if net.shared_decoder else next(iter(net.decoders.values()))).__name__,
            "neck": type(net.neck).__name__ if net.neck is not None else None,
            "heads": net.num_classes,
            "class_names": getattr(pl_module, "class_names", {}),
            "samrs_version": __version__,
        }
        if best and Path(best).is_file():
            state, info = read_state_dict(best)
            meta.update(source=str(best), global_step=info.get("global_step"),
                        score={ckpt.monitor: float(ckpt.best_model_score)})
        else:
            state = net.state_dict()
            meta.update(source="final weights", global_step=trainer.global_step)
        export_pretrained(state, self.path, meta)
        log.info("pre-trained backbone + decoder (from %s) exported to %s", meta["source"], self.path)


class ExportMAE(Callback):
    """Write the MAE model (`pl_module.net`) to `path` in MAE's checkpoint layout ({"model": ...}, read
    by start=samrs_mae) every `every_n_epochs` epochs (0: never) and at the end of training, so a
    long run has a usable file before it ends."""

    label = "MAE weights (start=samrs_mae start.checkpoint=...)"

    def __init__(self, path: str, every_n_epochs: int = 20) -> None:
        if every_n_epochs < 0:
            raise ConfigError(f"ExportMAE: every_n_epochs must be 0 or more, got {every_n_epochs}")
        self.path, self.every_n_epochs = Path(path), every_n_epochs
        self._exported_step: int | None = None
        self._epoch = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        # the epoch of the last batch trained, as MAE numbers its checkpoints (also after a resume,
        # which may enter an epoch without on_train_epoch_start)
        self._epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_epochs and (self._epoch + 1) % self.every_n_epochs == 0:
            self.export(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._exported_step != trainer.global_step:
            self.export(trainer, pl_module)

    def export(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._exported_step = trainer.global_step
        if not trainer.is_global_zero:
            return
        net = pl_module.net
        meta = {"global_step": trainer.global_step, "img_size": net.grid[0] * net.patch_size,
                "patch_size": net.patch_size, "mask_ratio": net.mask_ratio, "norm_pix_loss": net.norm_pix_loss,
                "samrs_version": __version__}
        export_mae(net, self.path, self._epoch, meta)
        log.info("MAE weights (epoch %d, step %d) exported to %s", self._epoch, trainer.global_step, self.path)
