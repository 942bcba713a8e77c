"""faiss's BLAS kernels (index.blas): the kernel set picked from a CPU's flags, the user's choice kept, and in a
fresh process faiss's bundled OpenBLAS running the picked kernels (threadpoolctl reads what it loaded)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from index import blas

AVX512 = {"sse2", "avx", "avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# in a fresh interpreter: import the package, then report faiss's OpenBLAS (0.3.15 in faiss-cpu's wheels; numpy's
# is another, newer one) and whether the variable was left set
PROBE = """
import json, os, sys
sys.path.insert(0, {root!r})
import index, faiss
print(json.dumps({{"faiss_openblas": index.blas.faiss_kernels(), "left": os.environ.get("OPENBLAS_CORETYPE")}}))
"""


@pytest.mark.parametrize("flags, expected", [
    (AVX512, "SkylakeX"),
    (AVX512 - {"avx512vl"}, "Haswell"),   # some AVX-512 subsets only (Xeon Phi): not SkylakeX's kernels
    ({"sse2", "avx", "avx2", "fma"}, "Haswell"),
    ({"sse2", "avx", "avx2"}, None),      # AVX2 without FMA: OpenBLAS decides
    ({"sse2", "sse3"}, None),
    (set(), None),                        # no /proc/cpuinfo (macOS, Windows)
])
def test_the_kernels_follow_the_cpus_flags(flags, expected):
    assert blas.core_type(frozenset(flags)) == expected


def test_the_flags_come_from_the_first_cpu_of_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert blas.cpu_flags(str(info)) == {"fpu", "sse2", "avx2", "fma"}
    assert blas.cpu_flags(str(tmp_path / "missing")) == frozenset()
    (tmp_path / "arm").write_text("processor\t: 0\nFeatures\t: fp asimd\n")
    assert blas.cpu_flags(str(tmp_path / "arm")) == frozenset()


def probe(**env) -> dict:
    environ = {k: v for k, v in os.environ.items() if k != blas.VARIABLE}
    result = subprocess.run([sys.executable, "-c", PROBE.format(root=ROOT)], env={**environ, **env},
                            capture_output=True, text=True, timeout=120, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_faiss_loads_on_the_picked_kernels_and_the_variable_is_not_left_set():
    chosen = blas.core_type(blas.cpu_flags())
    if chosen is None:
        pytest.skip("this CPU has no kernel set to pick: OpenBLAS's own detection stands")
    seen = probe()
    assert seen == {"faiss_openblas": [chosen], "left": None}


def test_a_core_type_the_user_set_is_kept():
    if blas.core_type(blas.cpu_flags()) is None:
        pytest.skip("needs a CPU with AVX2 and FMA (Haswell's kernels)")
    assert probe(OPENBLAS_CORETYPE="Haswell") == {"faiss_openblas": ["Haswell"], "left": "Haswell"}


def test_exact_search_on_the_picked_kernels_equals_numpy():
    faiss = blas.load_faiss()
    rng = np.random.default_rng(0)
    base, queries = rng.normal(size=(5000, 64)).astype(np.float32), rng.normal(size=(50, 64)).astype(np.float32)
    scores, ids = faiss.knn(queries, base, 5, metric=faiss.METRIC_INNER_PRODUCT)
    exact = queries @ base.T
    expected = np.argsort(-exact, axis=1)[:, :5]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(exact, expected, 1), rtol=1e-5, atol=1e-4)
