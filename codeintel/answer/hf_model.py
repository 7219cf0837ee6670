"""The bundled GGUF model as a Hugging Face folder, which is what vLLM loads (0.29 reads no GGUF).

transformers dequantizes the Q4_K_M weights to bfloat16 (~1.26 GB of safetensors, ~90 s on the
2-core box). The folder is built once next to the GGUF, written to a temporary directory and
renamed into place, and a manifest records every file's size and sha256 so a truncated or edited
copy is rebuilt instead of loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from codeintel.answer.llm import QWEN_CODER_05B, LLMSpec, assemble_gguf
from codeintel.errors import ModelUnavailableError

__all__ = ["hf_model_dir", "verify_hf_dir"]

_MANIFEST = "codeintel-manifest.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify_hf_dir(folder: Path, *, deep: bool = True) -> bool:
    """True when every file the manifest names is there with its size (and sha256 when ``deep``)."""
    try:
        manifest = json.loads((folder / _MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    for name, (size, sha) in manifest["files"].items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size or (deep and _sha256(path) != sha):
            return False
    return True


def hf_model_dir(spec: LLMSpec = QWEN_CODER_05B, cache_dir: Path | None = None) -> Path:
    """The Hugging Face folder of ``spec``'s bundled weights, converted once and checksummed."""
    gguf = assemble_gguf(spec, cache_dir)
    target = gguf.with_name(gguf.name.removesuffix(".gguf") + "-hf")
    if verify_hf_dir(target, deep=False):
        return target
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # transformers and the CPU torch wheel come with the vllm extra
        raise ModelUnavailableError(f"converting {spec.file_name} for vLLM needs the vllm extra (make install-vllm): {exc}") from None
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="bfloat16")
    model.hf_quantizer = None  # dequantized: the folder is plain bfloat16, not a GGUF checkpoint
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(tmp)
    files = {p.name: [p.stat().st_size, _sha256(p)] for p in sorted(tmp.iterdir()) if p.is_file()}
    (tmp / _MANIFEST).write_text(json.dumps({"model_id": spec.model_id, "source": spec.sha256, "files": files}, indent=1))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target
