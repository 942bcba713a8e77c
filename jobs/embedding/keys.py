"""The config keys the embedding jobs share (embed-images, embed-texts), checked once."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Literal

from jobs.core.config import ConfigError, JobConfig, key, require_non_negative, require_positive
from jobs.core.paths import check_input_exists, check_output_not_input
from udfs import precision

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedConfig(JobConfig):
    """Keys the embedding jobs share."""

    input: str = key("", "a path (read as named, whatever its characters), a Hadoop glob (only when no path "
                     "has that name; `\\` escapes a metacharacter) or `table:db.name`", flag="--input")
    input_format: Literal["auto", "images", "parquet", "csv", "jsonl", "text-dir", "table"] = key(
        "auto", "how to read `input`; auto = from the path")
    id_column: str = key("id", "column holding each row's unique id (tabular inputs)",
                         flag="--id-column")
    batch_size: int = key(32, "items per model call")
    num_partitions: int = key(0, "Spark partitions to embed in; 0 = 2 x the cluster's cores")
    torch_threads: int = key(0, "model threads per task (torch, ONNX Runtime or OpenVINO); 0 = the task's "
                             "cores (spark.task.cpus)")
    incremental: bool = key(False, "keep rows of the existing output whose id, content hash and model "
                            "are unchanged; embed new and changed items; drop ids no longer in the input")
    precision: Literal["fp32", "bf16"] = key(
        "fp32", "bf16 = autocast matmuls/convolutions to bfloat16 (about 2x faster on CPUs with AVX-512 "
        "BF16 or AMX, cosine >= 0.99 to fp32); recorded in the `model` column as `name+bf16`")
    arrow_batch_size: int = key(256, "rows per Arrow block handed to a worker")
    engine: Literal["auto", "torch", "onnx", "openvino"] = key(
        "auto", "what runs the model: torch, or its ONNX export run by ONNX Runtime (onnx, fp32 only) or "
        "OpenVINO (openvino); vectors within cosine 0.999 of torch's, so the `model` column does not name "
        "it. auto = the fastest measured for the model kind and precision (udfs/engines.py AUTO, "
        "BENCHMARKS.md)")
    engine_cache: str = key("", "local folder where ONNX exports are kept, one per model and library versions, "
                            "made at first use; empty = ~/.cache/sparkamp/engines on each machine")

    def validate(self) -> None:
        super().validate()
        if self.incremental and self.mode != "overwrite":
            raise ConfigError(f"key 'incremental': needs mode overwrite (the output is rebuilt from the "
                              f"kept and new rows), not {self.mode}")
        check_input_exists("input", self.input)
        check_output_not_input(self.input, self.output)
        require_positive(self, "batch_size", "arrow_batch_size")
        require_non_negative(self, "num_partitions", "torch_threads")
        if self.engine_cache and os.path.exists(self.engine_cache) and not os.path.isdir(self.engine_cache):
            raise ConfigError(f"key 'engine_cache': {self.engine_cache!r} is a file, not a folder")
        if self.precision != "fp32" and not precision.native_bf16():
            log.warning("precision %s: this driver's CPU has no bf16 instructions; executors without "
                        "them emulate bf16, slower than fp32", self.precision)
