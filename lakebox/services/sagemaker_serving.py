"""The batch transform worker lakebox starts for a transform job: the inference entry's handlers over each input.

`python -m lakebox.services.sagemaker_serving manifest.json`, in the job's code folder. The entry module
(SAGEMAKER_PROGRAM) provides `model_fn(model_dir)` and optionally `input_fn`, `predict_fn`, `output_fn`, as the
SageMaker scikit-learn serving stack calls them. Records are split and batched as TransformInput.SplitType and
BatchStrategy say.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any


def _load(code_dir: str, program: str) -> Any:
    sys.path.insert(0, code_dir)
    path = Path(code_dir) / program
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import the inference entry {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    if not hasattr(module, "model_fn"):
        raise SystemExit(f"{program} defines no model_fn(model_dir)")
    return module


def _requests(body: bytes, split_type: str, batch_strategy: str) -> list[bytes]:
    if split_type != "Line":
        return [body]
    lines = [line for line in body.split(b"\n") if line.strip()]
    if batch_strategy == "SingleRecord":
        return lines
    return [b"\n".join(lines)] if lines else []


def main(manifest_path: str) -> int:
    """Serve every input file of the manifest; an exception fails the job (its message is the FailureReason)."""
    manifest = json.loads(Path(manifest_path).read_text("utf-8"))
    entry = _load(manifest["code_dir"], manifest["program"])
    model = entry.model_fn(manifest["model_dir"])
    decode = getattr(entry, "input_fn", lambda body, content_type: json.loads(body))
    predict = getattr(entry, "predict_fn", lambda data, m: m.predict(data))
    encode = getattr(entry, "output_fn", lambda prediction, accept: json.dumps(prediction))
    joiner = b"\n" if manifest["assemble_with"] == "Line" else b""
    for source, target in manifest["files"]:
        body = Path(source).read_bytes()
        responses = []
        for request in _requests(body, manifest["split_type"], manifest["batch_strategy"]):
            response = encode(predict(decode(request, manifest["content_type"]), model), manifest["accept"])
            responses.append(response.encode("utf-8") if isinstance(response, str) else bytes(response))
        Path(target).write_bytes(joiner.join(r.rstrip(b"\n") for r in responses) + (b"\n" if responses else b""))
        print(f"transformed {source}: {len(responses)} request(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
