"""A MONAI bundle of an exported image tower (``medimp export --format bundle``).

Layout (MONAI's bundle convention)::

    configs/metadata.json    version, packages, task, network_data_format (inputs/outputs)
    configs/inference.json   the network (``models/model.ts``, TorchScript) and a ``run`` that
                             embeds every ``sample/*.npz`` (or ``dataset_dir``) into
                             ``output_dir/<name>.npy``
    models/model.ts          the traced image tower (medimp.train.export.ExportedEncoder)
    sample/*.npz             two random inputs of the model's shape (``image`` [C, D, H, W],
                             ``phase_mask`` [C]); never a patient's exam, since a bundle is
                             made to be shared
    docs/README.md           the model card

It runs with MONAI alone (no medimp): ``python -m monai.bundle run --config_file
configs/inference.json --meta_file configs/metadata.json --bundle_root .`` (MONAI's command line
needs its optional ``fire`` package), ``monai.bundle.run(...)`` in Python, or
``monai.bundle.ConfigParser`` and ``get_parsed_content("network")``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medimp import __version__
from medimp._io import atomic_path, atomic_write_text

__all__ = ["load_bundle_network", "write_bundle"]

_INFERENCE: dict[str, Any] = {
    "imports": ["$import glob", "$import os", "$import numpy as np", "$import torch"],
    "bundle_root": ".",
    "device": "$torch.device('cpu')",
    "network_def": "$torch.jit.load(os.path.join(@bundle_root, 'models', 'model.ts'), "
                   "map_location=@device)",
    "network": "$@network_def.eval()",
    "dataset_dir": "$os.path.join(@bundle_root, 'sample')",
    "output_dir": "$os.path.join(@bundle_root, 'eval')",
    "datalist": "$sorted(glob.glob(os.path.join(@dataset_dir, '*.npz')))",
    "load": "$lambda f: (lambda d: (torch.from_numpy(d['image'])[None].float().to(@device), "
            "torch.from_numpy(d['phase_mask'])[None].float().to(@device)))(np.load(f))",
    # no_grad as a decorator: a global torch.set_grad_enabled(False) in "initialize" would leak
    # into the caller of monai.bundle.run (its later training steps had no gradients)
    "embed": "$torch.no_grad()(lambda f: @network(*@load(f))[0].cpu().numpy())",
    "save": "$lambda f: np.save(os.path.join(@output_dir, "
            "os.path.basename(f)[:-len('.npz')] + '.npy'), @embed(f))",
    "initialize": ["$os.makedirs(@output_dir, exist_ok=True)"],
    "run": ["$[@save(f) for f in @datalist]"],
}


def _metadata(info: dict[str, Any], prep: Any, projected: bool, n_phases: int,
              dim: int) -> dict[str, Any]:
    import monai


    phases = list(info.get("phases") or [])
    return {
        "version": "0.1.0",
        "changelog": {"0.1.0": "exported by medimp export"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {},
        "name": f"medimp {info.get('method')} image encoder",
        "task": "Embedding of multi-phase contrast-enhanced kidney MRI exams",
        "description": "A 3D image encoder pretrained by medimp; see docs/README.md (model card) "
                       "for its training, its preprocessing and its check against medimp.",
        "authors": "medimp",
        "copyright": "see the training data's terms",
        "network_data_format": {
            "inputs": {
                "image": {"type": "image", "format": "magnitude", "modality": "MR",
                          "num_channels": n_phases, "spatial_shape": list(prep.shape),
                          "dtype": "float32", "value_range": [], "is_patch_data": False,
                          "channel_def": {str(i): p for i, p in enumerate(phases)}},
                "phase_mask": {"type": "tensor", "format": "mask", "num_channels": n_phases,
                               "spatial_shape": [], "dtype": "float32",
                               "value_range": [0, 1], "is_patch_data": False,
                               "channel_def": {str(i): p for i, p in enumerate(phases)}},
            },
            "outputs": {
                "pred": {"type": "tensor", "format": "embedding", "num_channels": dim,
                         "spatial_shape": [], "dtype": "float32", "value_range": [],
                         "is_patch_data": False,
                         "channel_def": {"0": "projected image-text space" if projected
                                         else "encoder features"}},
            },
        },
        "medimp": {"version": str(__version__), "preprocess": prep.model_dump(mode="json"),
                   "phases": phases, "projected": projected},
    }


def load_bundle_network(bundle: Path) -> Any:
    """The bundle's ``network`` through MONAI's ``ConfigParser`` (what MONAI's tools run)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    meta = bundle / "configs" / "metadata.json"
    if meta.is_file():
        parser.read_meta(str(meta))
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    return parser.get_parsed_content("network")


def write_bundle(root: Path, info: dict[str, Any], prep: Any, projected: bool,
                 sample: tuple[list[tuple[str, str]], torch.Tensor, torch.Tensor]) -> Any:
    """Write the bundle's configs and sample into ``root`` (``models/model.ts`` is already
    there) and return a function running the network MONAI's ConfigParser builds."""

    _keys, image, mask = sample
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "sample").mkdir(parents=True, exist_ok=True)
    # random inputs, not the check's exams: their file names were patient IDs and their voxels a
    # patient's images, in a folder made to be shared
    g = torch.Generator().manual_seed(0)
    for i in range(2):
        x = torch.rand(tuple(image.shape[1:]), generator=g)
        m = torch.ones(int(mask.shape[1]))
        if i == 1 and m.numel() > 1:  # the second one with its last phase missing
            m[-1], x[-1] = 0.0, 0.0
        with atomic_path(root / "sample" / f"sample{i}.npz") as tmp:
            np.savez(tmp, image=x.numpy().astype(np.float32),
                     phase_mask=m.numpy().astype(np.float32))
    atomic_write_text(root / "configs" / "inference.json",
                      json.dumps(_INFERENCE, indent=2) + "\n")
    network = load_bundle_network(root)
    with torch.no_grad():
        dim = int(network(image[:1], mask[:1]).shape[1])
    meta = _metadata(info, prep, projected, int(image.shape[1]), dim)
    atomic_write_text(root / "configs" / "metadata.json", json.dumps(meta, indent=2) + "\n")
    network = load_bundle_network(root)  # as a user loads it: metadata and config together

    def run(x: torch.Tensor, m: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return network(x, m).numpy()

    return run
