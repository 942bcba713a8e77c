"""Model time alone of each engine and precision, 1 thread, interleaved, best of R rounds: the figure
that chose udfs/engines.py AUTO on a loaded machine (bench/embed.py's Spark rows need a quiet one).

    PYTHONPATH=. .venv/bin/python bench/engine_speed.py [R]   (after a bench/embed.py --quick run: its texts and
                                                   engine cache in /tmp/h17e2/quick, or edit CACHE/TEXTS)

Prints | kind | engine precision | items/s | x torch fp32 | min cosine to torch fp32 | on 48 iconic200
images (batches of 4) and 96 AG News texts (batches of 8)."""
import glob
import json
import sys
import time

import numpy as np
import torch

torch.set_num_threads(1)
from udfs import cnn, texts, images
CACHE = "/tmp/h17e2/quick/engines"
TEXTS = "/tmp/h17e2/quick/texts.jsonl"
cache = CACHE
paths = sorted(glob.glob("../shared/data/iconic200/**/*.jpg", recursive=True))[:48]
variants = [("torch","fp32"),("onnx","fp32"),("openvino","fp32"),("torch","bf16"),("openvino","bf16")]
out = {}
im = {v: cnn.load_image_model(cnn.ImageModelSpec(precision=v[1], engine=v[0], engine_cache=cache)) for v in variants}
prep = im[variants[0]].prep
pix = np.stack([images.load_pixels(open(p,"rb").read(), prep) for p in paths])
rows = [l for l in open(TEXTS)][:96]
docs = [json.loads(l)["text"] for l in rows]
tx = {v: texts.load_text_model(texts.TextModelSpec(precision=v[1], engine=v[0], engine_cache=cache)) for v in variants}
best = {("images",)+v: 1e9 for v in variants}; best.update({("texts",)+v: 1e9 for v in variants})
ref_i = cnn.embed_batch(im[variants[0]], pix); ref_t = texts.embed_texts(tx[variants[0]], docs, 8).embeddings
cos = {}
for r in range(int(sys.argv[1]) if len(sys.argv) > 1 else 4):
    for v in variants:
        t = time.perf_counter()
        e = np.concatenate([cnn.embed_batch(im[v], pix[i:i+4]) for i in range(0, len(pix), 4)])
        best[("images",)+v] = min(best[("images",)+v], time.perf_counter() - t)
        cos[("images",)+v] = float(((e*ref_i).sum(1)).min())
        t = time.perf_counter()
        e = texts.embed_texts(tx[v], docs, 8).embeddings
        best[("texts",)+v] = min(best[("texts",)+v], time.perf_counter() - t)
        cos[("texts",)+v] = float(((e*ref_t).sum(1)).min())
for k in best:
    n = len(pix) if k[0] == "images" else len(docs)
    print(f"| {k[0]} | {k[1]} {k[2]} | {n / best[k]:.1f} | {best[(k[0], 'torch', 'fp32')] / best[k]:.2f} | {cos[k]:.5f} |")
