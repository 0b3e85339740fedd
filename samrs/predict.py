"""Apply a trained model to whole scenes: python -m samrs.predict ckpt_path=RUN_OR_CKPT inputs=DIR_OR_GLOB
output_dir=OUT [head=NAME] [predict.flip=true] [save_probabilities=true] [save_polygons=true].

The model and the way its inputs were read (bands, stretch, normalisation) are rebuilt from the
configuration samrs.train stored in the checkpoint. Each scene (a GeoTIFF of any size, any GDAL
raster, or a plain image) goes through sliding-window inference a band of rows at a time
(samrs.inference.SlidingWindow.rows), so memory holds one band of windows, never the scene; each
finished band of the class map is written at once. Outputs per scene, in `output_dir`:

- `<name>.tif`: the class map (uint8 class ids of the head, 255 on nodata), tiled and compressed,
  with the scene's CRS and transform and the classes' colours; `<name>.png` for plain images.
- `<name>_probs.tif` (`save_probabilities`): per class, the probability x 255 (uint8, band
  descriptions = class names, GDAL scale 1/255).
- `<name>.gpkg` (`save_polygons`): one polygon per connected region of a class, in the scene's CRS
  (pixels for images without one), with class id, class name and area.

Files are written under temporary names and renamed when complete, the class map last: a scene
whose class map exists is skipped, so an interrupted run resumes by scene.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from samrs.errors import ConfigError, MissingPathError
from samrs.classes import SubsetClasses, subset_classes
from samrs.data.transforms import IMAGENET_MEAN, IMAGENET_STD, whole_transform
from samrs.evaluate import read_checkpoint, run_window, untrained_model_config
from samrs.inference import SlidingWindow
from samrs.labeling.job import UsageError, check_settings
from samrs.utils.geo import (
    RASTER_SUFFIXES,
    GeoTiffRows,
    RasterInfo,
    Stretch,
    class_geometries,
    raster_info,
    read_window,
    rgb_bands,
    to_uint8,
    write_vector,
)
from samrs.utils.hydra import samrs_main
from samrs.utils.io import write_png
from samrs.utils.logging import get_logger
from samrs.utils.runs import apply_extras, resolve_ckpt_path

log = get_logger(__name__)
GEOTIFF_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")


def list_inputs(inputs: str) -> list[Path]:
    """A raster file, a folder of them, or a glob pattern; sorted."""
    path = Path(inputs)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = [p for p in sorted(path.iterdir()) if p.suffix.lower() in RASTER_SUFFIXES and not p.name.startswith(".")]
    else:
        found = [Path(p) for p in sorted(glob.glob(inputs, recursive=True)) if Path(p).is_file()]
    if not found:
        raise MissingPathError(f"inputs={inputs}: no raster found (a file, a folder of {', '.join(RASTER_SUFFIXES)} "
                               f"files, or a glob pattern)")
    names = [p.stem for p in found]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"inputs={inputs}: two scenes are named {repeated[0]} (their outputs would collide)")
    return found


def choose_head(heads: Sequence[str], head: str | None) -> str:
    if head is None:
        if len(heads) > 1:
            raise UsageError(f"the model has {len(heads)} heads ({', '.join(heads)}): choose one with head=NAME")
        return heads[0]
    if head not in heads:
        raise UsageError(f"head={head}: the model's heads are {', '.join(heads)}")
    return head


@dataclass
class InputReader:
    """Reads rows of a scene as the model was trained: its `bands` in their data type scaled and
    normalised as in training (multispectral), or 8-bit RGB (the label job's view: the scene's
    red/green/blue bands, 16-bit data stretched by `stretch`) normalised likewise."""

    bands: int | list[int] | None  # the training's data.bands; None: 8-bit RGB
    normalize: Callable[[np.ndarray], torch.Tensor]
    rgb: Sequence[int] | None = None  # RGB models: the bands shown as red, green, blue (null: colour interp.)
    stretch: Stretch = Stretch()

    @classmethod
    def from_training(cls, data: DictConfig, rgb: Sequence[int] | None, stretch: Stretch) -> InputReader:
        bands = OmegaConf.to_container(data.bands) if OmegaConf.select(data, "bands") is not None else None
        options = {"mean": OmegaConf.select(data, "val_transform.mean") or IMAGENET_MEAN,
                   "std": OmegaConf.select(data, "val_transform.std") or IMAGENET_STD}
        if bands is not None:
            channels = bands if isinstance(bands, int) else len(bands)
            options.update(channels=channels, max_pixel_value=OmegaConf.select(data, "max_pixel_value"))
        ops = whole_transform(**{k: list(v) if isinstance(v, Sequence) else v for k, v in options.items()}).ops
        return cls(bands, lambda pixels: ops(image=pixels)["image"], rgb, stretch)

    def band_indexes(self, info: RasterInfo) -> list[int]:
        if self.bands is None:
            return list(rgb_bands(info, self.rgb))
        indexes = list(range(1, self.bands + 1)) if isinstance(self.bands, int) else list(self.bands)
        if max(indexes) > info.count:
            raise UsageError(f"{info.path} has {info.count} bands; the model was trained on bands {indexes} (data.bands)")
        return indexes

    def reader(self, info: RasterInfo) -> Callable[[int, int], tuple[torch.Tensor, np.ndarray]]:
        """read(top, bottom) -> ((C, rows, W) normalised tensor, (rows, W) valid)."""
        indexes = self.band_indexes(info)
        limits = self.stretch.limits(info, indexes) if self.bands is None else None

        def read(top: int, bottom: int) -> tuple[torch.Tensor, np.ndarray]:
            pixels, valid = read_window(info.path, indexes, 0, top, info.width, bottom - top)
            if self.bands is None:
                pixels = to_uint8(pixels, limits)
            tensor = self.normalize(pixels)
            tensor[:, torch.from_numpy(~valid)] = 0  # nodata: the mean colour
            return tensor, valid

        return read


class SceneOutputs:
    """The files of one scene, written band of rows by band of rows and renamed when complete."""

    def __init__(self, out_dir: Path, name: str, info: RasterInfo, classes: SubsetClasses, probabilities: bool,
                 polygons: bool) -> None:
        self.georeferenced = info.georef.has_crs or Path(info.path).suffix.lower() in GEOTIFF_SUFFIXES
        self.path = out_dir / f"{name}{'.tif' if self.georeferenced else '.png'}"
        self.classes, self.info = classes, info
        georef = info.georef if self.georeferenced else None
        self.map = GeoTiffRows(self.path, info.height, info.width, 1, np.uint8, georef, nodata=255,
                               colormap=classes.palette) if self.georeferenced else None
        self.whole = None if self.georeferenced else np.full((info.height, info.width), 255, np.uint8)
        self.probs = GeoTiffRows(out_dir / f"{name}_probs.tif", info.height, info.width, classes.num_classes,
                                 np.uint8, georef, descriptions=classes.names,
                                 scales=[1 / 255] * classes.num_classes) if probabilities else None
        self.polygons_path = out_dir / f"{name}.gpkg" if polygons else None
        self.pieces: list[tuple[int, Any]] = []

    def write(self, top: int, scores: torch.Tensor, valid: np.ndarray, average: str) -> None:
        """Rows from `top`: their (C, rows, W) logits or probabilities and valid pixels."""
        ids = scores.argmax(0).to(torch.uint8).numpy()
        ids[~valid] = 255
        if self.map is not None:
            self.map.write(top, ids)
        else:
            self.whole[top:top + len(ids)] = ids
        if self.probs is not None:
            probs = scores if average == "probs" else scores.softmax(0)
            self.probs.write(top, (probs * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy())
        if self.polygons_path is not None:
            georef = self.info.georef.shifted(0, top)
            self.pieces += list(class_geometries(ids, georef))

    def close(self) -> None:
        """Rename everything into place, the class map last (its presence means the scene is done)."""
        if self.probs is not None:
            self.probs.close()
        if self.polygons_path is not None:
            self._write_polygons()
        if self.map is not None:
            self.map.close()
        else:
            write_png(self.path, self.whole, palette=self.classes.palette)

    def abort(self) -> None:
        for writer in (self.map, self.probs):
            if writer is not None:
                writer.abort()

    def _write_polygons(self) -> None:
        """The regions of every band, merged across band borders, one polygon per region."""
        import shapely

        columns: dict[str, list] = {"class_id": [], "class_name": [], "area": []}
        geometries = []
        for class_id in sorted({c for c, _ in self.pieces}):
            merged = shapely.unary_union([g for c, g in self.pieces if c == class_id])
            for part in shapely.get_parts(merged):
                columns["class_id"].append(class_id)
                columns["class_name"].append(self.classes.names[class_id])
                columns["area"].append(float(part.area))
                geometries.append(part)
        write_vector(self.polygons_path, {"predictions": (columns, geometries, self.info.georef.crs)})


def head_classes(train_cfg: DictConfig, model: Any, head: str) -> SubsetClasses:
    """The head's class names and colours: its class list's own palette when it names one."""
    names = list(model.class_names_of(head))
    spec = OmegaConf.select(train_cfg, f"data.subsets.{head}.classes")
    if isinstance(spec, str):
        try:
            known = subset_classes(spec)
            if list(known.names) == names:
                return SubsetClasses(head, known.names, known.palette)
        except KeyError:
            pass
    return SubsetClasses(head, tuple(names))


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def predict(cfg: DictConfig) -> list[Path]:
    """Predict every input scene; returns the class maps written (or found complete)."""
    for key in ("inputs", "output_dir"):
        if OmegaConf.is_missing(cfg, key) or not cfg.get(key):
            raise UsageError(f"{key} is required: python -m samrs.predict ckpt_path=RUN inputs=DIR_OR_GLOB output_dir=OUT")
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, cfg.paths.output_dir, resuming=False)
    scenes = list_inputs(str(cfg.inputs))
    train_cfg, state_dict = read_checkpoint(ckpt_path)
    model = hydra.utils.instantiate(untrained_model_config(train_cfg.model))
    model.load_state_dict(state_dict)
    device = pick_device(cfg.device)
    model.to(device).eval()
    head = choose_head(list(model.net.num_classes), cfg.get("head"))
    spec = OmegaConf.to_container(cfg.predict)
    windows = SlidingWindow(**{**spec, "window": spec.get("window") or run_window(train_cfg, "predict.window")})
    classes = head_classes(train_cfg, model, head)
    stretch = Stretch(**{k: tuple(v) if isinstance(v, Sequence) and not isinstance(v, str) else v
                         for k, v in OmegaConf.to_container(cfg.stretch).items()})
    reader = InputReader.from_training(train_cfg.data, cfg.get("rgb_bands"), stretch)
    out_dir = Path(cfg.output_dir)
    check_settings(out_dir, {"checkpoint": str(Path(ckpt_path).resolve()), "head": head,
                             "predict": OmegaConf.to_container(cfg.predict), "rgb_bands": cfg.get("rgb_bands"),
                             "stretch": OmegaConf.to_container(cfg.stretch),
                             "save_probabilities": cfg.save_probabilities, "save_polygons": cfg.save_polygons})
    infos = [raster_info(p) for p in scenes]
    for info in infos:  # every scene fits the model before the first is predicted
        reader.band_indexes(info)
    todo = [(p, i) for p, i in zip(scenes, infos) if not _done(out_dir, p.stem)]
    if len(todo) < len(scenes):
        log.info("%d of %d scenes are complete in %s and are skipped", len(scenes) - len(todo), len(scenes), out_dir)
    forward = _forward(model, head, device)
    total = sum(windows.count_windows(i.height, i.width) for _, i in todo)
    with _progress(cfg.progress) as progress:
        task = progress.add_task("predicting", total=total, scene="")
        for path, info in todo:
            progress.update(task, scene=path.name)
            predict_scene(forward, windows, reader, info, out_dir, classes, cfg,
                          on_windows=lambda n: progress.advance(task, n))
    written = [_map_path(out_dir, p.stem) for p in scenes]
    log.info("class maps of %d scenes in %s", len(written), out_dir)
    return written


def predict_scene(forward: Callable[[torch.Tensor], torch.Tensor], windows: SlidingWindow, reader: InputReader,
                  info: RasterInfo, out_dir: Path, classes: SubsetClasses, cfg: DictConfig,
                  on_windows: Callable[[int], None] | None = None) -> Path:
    """One scene, band of rows by band of rows; its outputs appear only once complete."""
    read = reader.reader(info)
    valid_rows: dict[int, np.ndarray] = {}

    def read_rows(top: int, bottom: int) -> torch.Tensor:
        pixels, valid = read(top, bottom)
        for row in range(top, bottom):  # kept until their band of the map is written
            valid_rows.setdefault(row, valid[row - top])
        return pixels

    outputs = SceneOutputs(out_dir, Path(info.path).stem, info, classes, cfg.save_probabilities, cfg.save_polygons)
    try:
        for top, scores in windows.rows(forward, read_rows, info.height, info.width, on_windows):
            rows = range(top, top + scores.shape[1])
            valid = np.stack([valid_rows.pop(r) for r in rows])
            outputs.write(top, scores, valid, windows.average)
        outputs.close()
    except BaseException:
        outputs.abort()
        raise
    return outputs.path


def _forward(model: Any, head: str, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(x: torch.Tensor) -> torch.Tensor:
        return model(x.to(device), head)

    return forward


def _map_path(out_dir: Path, name: str) -> Path:
    tif = out_dir / f"{name}.tif"
    return tif if tif.exists() or not (out_dir / f"{name}.png").exists() else out_dir / f"{name}.png"


def _done(out_dir: Path, name: str) -> bool:
    return (out_dir / f"{name}.tif").is_file() or (out_dir / f"{name}.png").is_file()


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("[bold]predicting[/] {task.fields[scene]}"), BarColumn(bar_width=20),
                    MofNCompleteColumn(), TextColumn("windows"), TimeElapsedColumn(), TimeRemainingColumn(),
                    disable=not enabled)


@samrs_main("predict")
def main(cfg: DictConfig) -> None:
    """The predict job; user errors (samrs.errors) are one `error:` line and exit status 2."""
    apply_extras(cfg)
    predict(cfg)


if __name__ == "__main__":
    main()
