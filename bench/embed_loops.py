"""The bare loops bench/embed.py measures the Spark jobs against: the same batch functions without
Spark (fp32 or bf16), a naive per-image torchvision loop, and the CNN's FLOPs per image."""
from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from udfs import cnn, images, texts


@dataclass
class Measure:
    """One timed pass: `items` in `seconds` of wall time; decode/model seconds summed over workers."""

    variant: str
    items: int
    seconds: float
    decode_s: float = 0.0
    model_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.items / self.seconds


def embed_files(model: cnn.ImageModel, paths: list[str], batch_size: int) -> tuple[float, float]:
    """Read + decode + preprocess a batch with PIL, then one `embed_batch`. (decode s, model s)."""
    decode_s = model_s = 0.0
    for start in range(0, len(paths), batch_size):
        tick = time.perf_counter()
        pixels = np.stack([images.load_pixels(Path(p).read_bytes(), model.prep)
                           for p in paths[start:start + batch_size]])
        tock = time.perf_counter()
        cnn.embed_batch(model, pixels)
        decode_s, model_s = decode_s + tock - tick, model_s + time.perf_counter() - tock
    return decode_s, model_s


def naive_files(model: cnn.ImageModel, paths: list[str], _batch_size: int) -> tuple[float, float]:
    """The tutorial loop: PIL full decode, torchvision Resize/CenterCrop/ToTensor/Normalize, one image
    per forward pass under `no_grad`, NCHW fp32 weights and inputs. (decode s, model s)."""
    import torch
    from PIL import Image
    from torchvision import transforms

    prep = transforms.Compose([transforms.Resize(model.prep.resize), transforms.CenterCrop(model.prep.crop),
                               transforms.ToTensor(), transforms.Normalize(model.mean, model.std)])
    decode_s = model_s = 0.0
    for path in paths:
        tick = time.perf_counter()
        x = prep(Image.open(path).convert("RGB")).unsqueeze(0)
        tock = time.perf_counter()
        with torch.no_grad():
            out = model.features(x).mean(dim=(2, 3))
            torch.nn.functional.normalize(out, dim=1).numpy()
        decode_s, model_s = decode_s + tock - tick, model_s + time.perf_counter() - tock
    return decode_s, model_s


def encode_texts(model: texts.TextModel, items: list[str], batch_size: int) -> tuple[float, float]:
    """`embed_texts` (length-sorted batches, the precision's autocast). (0, model s)."""
    tick = time.perf_counter()
    texts.embed_texts(model, items, batch_size)
    return 0.0, time.perf_counter() - tick


def _naive_model() -> cnn.ImageModel:
    import torch

    model = cnn.load_image_model(cnn.ImageModelSpec())
    model.net.to(memory_format=torch.contiguous_format)
    return model


LOADERS = {"images": lambda p: cnn.load_image_model(cnn.ImageModelSpec(precision=p)),
           "texts": lambda p: texts.load_text_model(texts.TextModelSpec(precision=p)),
           "naive": lambda _p: _naive_model()}
LOOPS = {"images": embed_files, "texts": encode_texts, "naive": naive_files}
_MODELS: dict[tuple, object] = {}


def timed_loop(kind: str, precision: str, items: list[str], batch_size: int,
               ready: Any = None) -> tuple[float, float, float]:
    """(wall s, decode s, model s) of the bare loop; model load and one warm-up batch untimed."""
    if (kind, precision) not in _MODELS:
        _MODELS[kind, precision] = LOADERS[kind](precision)
    model, loop = _MODELS[kind, precision], LOOPS[kind]
    loop(model, items[:batch_size], batch_size)
    if ready is not None:
        ready.wait()  # a barrier: all processes start the timed pass together
    tick = time.perf_counter()
    decode_s, model_s = loop(model, items, batch_size)
    return time.perf_counter() - tick, decode_s, model_s


def bare_threads(kind: str, precision: str, items: list[str], batch_size: int, threads: int) -> Measure:
    """The bare loop in this process with `threads` torch threads."""
    import torch

    torch.set_num_threads(threads)
    name = "naive loop, 1 process x 2 threads, fp32" if kind == "naive" else \
        f"bare, 1 process x {threads} threads, {precision}"
    return Measure(name, len(items), *timed_loop(kind, precision, items, batch_size))


def _worker(kind: str, precision: str, items: list[str], batch_size: int, barrier: Any, results: Any) -> None:
    import torch

    torch.set_num_threads(1)
    results.put(timed_loop(kind, precision, items, batch_size, barrier))


def bare_processes(kind: str, precision: str, items: list[str], batch_size: int, procs: int) -> Measure:
    """The bare loop in `procs` spawned processes x 1 thread, items dealt round-robin; wall = slowest."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(procs), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(kind, precision, items[i::procs], batch_size, barrier, results))
               for i in range(procs)]
    for worker in workers:
        worker.start()
    done = [results.get(timeout=3600) for _ in workers]
    for worker in workers:
        worker.join()
    return Measure(f"bare, {procs} processes x 1 thread, {precision}", len(items), max(d[0] for d in done),
                   sum(d[1] for d in done), sum(d[2] for d in done))


def gflop_per_image() -> float:
    """FLOPs of one forward pass of the default CNN at its crop size (torch's FLOP counter; a
    multiply-add counts 2), in GFLOP."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = cnn.load_image_model(cnn.ImageModelSpec())
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.features(torch.zeros(1, 3, model.prep.crop, model.prep.crop))
    return counter.get_total_flops() / 1e9


def peak_gflops(precision: str, cores: int) -> tuple[float, str]:
    """The CPU's theoretical peak and how it was worked out (clock from /proc/cpuinfo)."""
    mhz = max(float(line.split(":")[1]) for line in open("/proc/cpuinfo") if line.startswith("cpu MHz"))
    if "AuthenticAMD" not in open("/proc/cpuinfo").read():
        return 0.0, "not worked out for this CPU"
    # Zen 4 (family 25, model 17 here): AVX-512 on two 256-bit FMA pipes = 16 fp32 FMAs a cycle;
    # VDPBF16PS does twice the multiply-adds of an fp32 FMA per lane
    per_cycle = 32 if precision == "fp32" else 64
    return cores * mhz / 1000 * per_cycle, f"{cores} cores x {mhz / 1000:.2f} GHz x {per_cycle} FLOP/cycle"


def profile_stages(paths: list[str], precision: str, batch_size: int, scratch: Path) -> dict[str, float]:
    """ms per image of each step the image job takes for a row, run one after another in this process
    with 1 torch thread: read, hash, decode, resize + crop, to tensor, model, pool + normalise, Arrow
    in and out of pandas, Parquet write."""
    import hashlib

    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from udfs import precision as precisions

    torch.set_num_threads(1)
    model = cnn.load_image_model(cnn.ImageModelSpec(precision=precision))
    clock = dict.fromkeys(["read file", "sha256", "decode (JPEG draft)", "resize + crop", "to tensor + scale",
                           "CNN forward", "pool + L2 normalise", "Arrow ↔ pandas", "Parquet write"], 0.0)

    def timed(name: str, fn: Any, *args: Any) -> Any:
        tick = time.perf_counter()
        out = fn(*args)
        clock[name] += time.perf_counter() - tick
        return out

    mean = torch.tensor(model.mean).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(model.std).view(1, 3, 1, 1) * 255.0
    rows = []
    for start in range(0, len(paths), batch_size):
        batch = paths[start:start + batch_size]
        data = [timed("read file", Path(p).read_bytes) for p in batch]
        digests = [timed("sha256", lambda d: hashlib.sha256(d).hexdigest(), d) for d in data]
        decoded = [timed("decode (JPEG draft)", images.decode, d, model.prep) for d in data]
        pixels = np.stack([timed("resize + crop", images.resize_crop, img, model.prep) for img in decoded])
        with torch.inference_mode(), precisions.autocast(precision):
            x = timed("to tensor + scale", lambda: (torch.from_numpy(pixels).permute(0, 3, 1, 2).float()
                                                    .contiguous(memory_format=torch.channels_last) - mean) / std)
            out = timed("CNN forward", model.features, x)
            vectors = timed("pool + L2 normalise", lambda: torch.nn.functional.normalize(
                out.mean(dim=(2, 3)).float(), dim=1).numpy())
        rows.append(pd.DataFrame({"id": batch, "content_hash": digests, "embedding": list(vectors)}))
    frame = pd.concat(rows, ignore_index=True)
    table = timed("Arrow ↔ pandas", lambda: pa.Table.from_pandas(pa.Table.from_pandas(frame).to_pandas()))
    timed("Parquet write", pq.write_table, table, str(scratch / f"profile-{precision}.parquet"))
    return {name: 1000 * seconds / len(paths) for name, seconds in clock.items()}


def padding_waste(items: list[str], batch_size: int, block: int = 1024) -> tuple[float, float]:
    """Share (%) of the token slots in each batch that are padding, in arrival order and in the job's
    order (longest first within each Arrow block of `block` rows), at the model's max length."""
    model = texts.load_text_model(texts.TextModelSpec())
    ids = model.encoder.tokenizer(items, truncation=True, max_length=model.max_tokens, verbose=False)["input_ids"]
    lengths = np.array([len(row) for row in ids])

    def waste(order: np.ndarray) -> float:
        batches = [lengths[order[i:i + batch_size]] for i in range(0, len(order), batch_size)]
        slots = sum(len(b) * b.max() for b in batches)
        return 100 * (1 - lengths.sum() / slots)

    ordered = np.concatenate([start + np.argsort(-lengths[start:start + block], kind="stable")
                              for start in range(0, len(lengths), block)])
    return waste(np.arange(len(lengths))), waste(ordered)
