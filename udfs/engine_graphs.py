"""What the engines run: the image and sentence models as exportable graphs, and sentence batches through them."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from udfs.engine_exports import Graph, module_of

PROBE_TEXTS = ["an example", "a longer example sentence, so that the two differ in length"]


def image_graph(model: Any, pooled: Callable) -> Graph:
    """The image path from uint8 pixels to vectors: `pooled(model, pixels)` with pixels
    [n, crop, crop, 3] uint8 (n varies) → [n, dim] float32, L2-normalised (scaling, the CNN cut at
    `layer`, pooling and normalising are all in the graph)."""
    import torch

    spec, crop = model.spec, model.prep.crop
    name = f"{spec.name}-{spec.layer}" if spec.layer else spec.name
    return Graph(name, module_of(model.net, lambda pixels: pooled(model, pixels)),
                 {"pixels": torch.zeros((2, crop, crop, 3), dtype=torch.uint8)}, {"pixels": {0: "batch"}},
                 {"kind": "image", "name": spec.name, "layer": spec.layer, "pooling": spec.pooling, "gem_p": spec.gem_p,
                  "flip": spec.flip, "concat_layer": spec.concat_layer, "crop": crop, "mean": model.mean,
                  "std": model.std, "architecture": type(model.net).__name__})


def text_graph(encoder: Any, name: str) -> Graph:
    """A Sentence-Transformers encoder from its tokenizer's tensors ([n, tokens] int64 each: input_ids,
    attention_mask, ... as its `preprocess` makes them; n and tokens vary) to its `sentence_embedding`
    [n, dim] (its pooling and Normalize modules included)."""
    features = encoder.preprocess(PROBE_TEXTS)
    tensors = {k: v for k, v in features.items() if hasattr(v, "ndim")}
    constants = {k: v for k, v in features.items() if k not in tensors}  # e.g. modality: text

    def forward(*inputs: Any) -> Any:
        return encoder({**constants, **dict(zip(tensors, inputs))})["sentence_embedding"]

    return Graph(name, module_of(encoder, forward), tensors,
                 {n: {0: "batch", 1: "tokens"} if t.ndim == 2 else {0: "batch"} for n, t in tensors.items()},
                 {"kind": "text", "modules": repr(encoder)})


def encode(runner: Any, encoder: Any, texts: list[str], batch_size: int) -> np.ndarray:
    """texts (in the order given) → [n, dim] float32, L2-normalised, `batch_size` texts per call of the
    engines.Runner, tokenised by the encoder's own `preprocess` (its truncation and default prompt)."""
    prompt = encoder.prompts.get(encoder.default_prompt_name) if encoder.default_prompt_name else None
    out = []
    for start in range(0, len(texts), batch_size):
        features = encoder.preprocess(texts[start:start + batch_size], prompt=prompt)
        out.append(runner({n: features[n].numpy() for n in runner.inputs}))
    vectors = np.concatenate(out).astype(np.float32, copy=False)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
