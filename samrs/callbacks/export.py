"""Export the trunk (backbone + neck + decoder) of a finished pre-training for fine-tuning."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch import Callback

from samrs import __version__
from samrs.errors import ConfigError
from samrs.models.weights import export_pretrained, read_state_dict
from samrs.utils.logging import get_logger

log = get_logger(__name__)


class ExportPretrained(Callback):
    """At the end of training, write the trunk of the best checkpoint (`source="best"`, when there is
    one) or of the final weights (`source="last"`) to `path`, for `samrs.models.load_pretrained`."""

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
