"""The processor's edge MLP as one hand-written Intel AMX kernel (amx_edge_mlp.c), bf16 only.

On AMX CPUs oneDNN's bf16 products are fast enough that a GraphCast_small step spent most of
its time in the element-wise work around them (gathers, swish, LayerNorm, the sums, the edge
update), each pass reading or writing an edge-sized tensor. The kernel does a block of edges
at a time while it is in cache: see the C file. It is built with the C compiler that
torch.compile already needs, once per source and compiler, into Inductor's cache folder
(settings.use_kernel_cache points that at the engine's cache folder), and loaded with ctypes.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import torch

_LOG = logging.getLogger(__name__)
_SOURCE = "amx_edge_mlp.c"
_FLAGS = ["-O3", "-march=sapphirerapids", "-fopenmp", "-shared", "-fPIC", "-lm"]
_CPU_FLAGS = ("amx_tile", "amx_bf16", "avx512_bf16")


def cpu_has_amx() -> bool:
    """Whether this CPU and kernel offer AMX bf16 tiles (Linux: /proc/cpuinfo's flags)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            flags = next((line for line in info if line.startswith("flags")), "").split()
    except OSError:
        return False
    return all(flag in flags for flag in _CPU_FLAGS)


@functools.cache
def library() -> ctypes.CDLL | None:
    """The built kernel library, or None where this host cannot run it (no AMX, not Linux,
    no C compiler, or Linux refuses the tile state): the network then keeps oneDNN's path."""
    if not sys.platform.startswith("linux") or not cpu_has_amx():
        return None
    try:
        lib = ctypes.CDLL(str(_build()))
    except (OSError, subprocess.CalledProcessError) as error:
        _LOG.warning("the AMX edge kernel could not be built or loaded (%s); using oneDNN's "
                     "products", error)
        return None
    if lib.gc_amx_init() != 0:
        _LOG.warning("Linux refused this process the AMX tile state; using oneDNN's products")
        return None
    lib.gc_edge_mlp.restype = ctypes.c_int
    return lib


def _build() -> Path:
    """Compile the kernel unless a library of this source and compiler is in the cache."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir
    compiler = os.environ.get("CC", "cc")
    source = resources.files("graphcast_api.engine").joinpath(_SOURCE).read_bytes()
    version = subprocess.run([compiler, "--version"], capture_output=True, check=True).stdout
    key = hashlib.sha256(source + version + " ".join(_FLAGS).encode()).hexdigest()[:16]
    folder = Path(cache_dir()) / "amx"
    target = folder / f"amx_edge_mlp-{key}.so"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as work:
        (Path(work) / _SOURCE).write_bytes(source)
        built = Path(work) / target.name
        subprocess.run([compiler, str(Path(work) / _SOURCE), "-o", str(built), *_FLAGS],
                       capture_output=True, check=True)
        os.replace(built, target)  # atomic: a concurrent build leaves one whole library
    return target


def pack(weight: torch.Tensor) -> torch.Tensor:
    """A bf16 weight [K, N] in the kernel's AMX layout: for each 16 output columns, the K
    rows in pairs ([N / 16, K / 2, 16, 2])."""
    k, n = weight.shape
    return (weight.to(torch.bfloat16).reshape(k // 2, 2, n // 16, 16)
            .permute(2, 0, 3, 1).contiguous())


class FusedEdgeMlp(NamedTuple):
    """One processor edge MLP's weights as the kernel takes them (see fused_edge_mlp)."""

    w_edge: torch.Tensor   # packed (pack)
    b1: torch.Tensor       # float32 [L]
    w2: torch.Tensor       # packed
    b2: torch.Tensor
    scale: torch.Tensor    # LayerNorm, float32 [L]
    offset: torch.Tensor


def fused_edge_mlp(w_edge: torch.Tensor, weights: tuple[torch.Tensor, ...],
                   biases: tuple[torch.Tensor, ...],
                   norm: tuple[torch.Tensor, torch.Tensor]) -> FusedEdgeMlp:
    """The kernel's form of an edge MLP of two layers and a LayerNorm (bf16 weights)."""
    if len(weights) != 2 or w_edge.shape[0] % 32 or w_edge.shape[1] % 32:
        raise ValueError("the AMX edge kernel takes two-layer MLPs of widths divisible by 32")
    return FusedEdgeMlp(pack(w_edge), biases[0].float(), pack(weights[1]), biases[1].float(),
                        norm[0].float(), norm[1].float())


@torch.library.custom_op("graphcast::amx_edge_mlp", mutates_args=("edge", "sums"))
def edge_mlp(edge: torch.Tensor, sums: torch.Tensor, send: torch.Tensor, recv: torch.Tensor,
             senders: torch.Tensor, receivers: torch.Tensor, w_edge: torch.Tensor,
             b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor, scale: torch.Tensor,
             offset: torch.Tensor) -> None:
    """edge [E, B, L] += the edge MLP's messages, sums [N, B, L] (float32) += each receiver's
    messages; send/recv [N, B, L]: the mesh latents' sender and receiver projections; edges
    sorted by receiver (see the C file)."""
    lib = library()
    if lib is None:
        raise RuntimeError("the AMX edge kernel is not available on this host")
    tensors = (edge, send, recv, senders, receivers, w_edge, b1, w2, b2, scale, offset, sums)
    dtypes = (torch.bfloat16,) * 3 + (torch.int64,) * 2 + (torch.bfloat16, torch.float32) * 2 \
        + (torch.float32,) * 3
    if any(t.dtype != d or not t.is_contiguous() or t.device.type != "cpu"
           for t, d in zip(tensors, dtypes, strict=True)):
        raise ValueError("the AMX edge kernel takes contiguous CPU tensors: bf16 latents and "
                         "weights, int64 indices, float32 biases, norms and sums")
    pointer = [ctypes.c_void_p(t.data_ptr()) for t in tensors]
    status = lib.gc_edge_mlp(*pointer[:5], ctypes.c_int64(edge.shape[1]),
                             ctypes.c_int64(edge.shape[2]), ctypes.c_int64(edge.shape[0]),
                             *pointer[5:])
    if status != 0:
        raise MemoryError("the AMX edge kernel could not allocate its scratch memory")


@edge_mlp.register_fake
def _edge_mlp_shape(edge: torch.Tensor, sums: torch.Tensor, *args: torch.Tensor) -> None:
    return None
