"""GraphCast's edge MLPs as one hand-written Intel AMX kernel (amx_edge_mlp.c), bf16 only.

On AMX CPUs oneDNN's bf16 products are fast enough that a GraphCast_small step spent most of
its time in the element-wise work around them (gathers, swish, LayerNorm, the sums, the edge
update), each pass reading or writing an edge-sized tensor. The kernel does the processor's,
the encoder's and the decoder's edge MLPs a block of edges at a time while the block is in
cache: see the C file. It is built with the compiler that torch.compile already uses, once
per source and compiler, into Inductor's cache folder (settings.use_kernel_cache points
that at the engine's cache folder), and loaded with ctypes.
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
    no compiler, or Linux refuses the tile state): the network then keeps oneDNN's path."""
    if not sys.platform.startswith("linux") or not cpu_has_amx():
        return None
    try:
        lib = ctypes.CDLL(str(_build()))
    except (OSError, RuntimeError, subprocess.CalledProcessError) as error:  # no compiler
        _LOG.warning("the AMX edge kernel could not be built or loaded (%s); using oneDNN's "
                     "products", error)
        return None
    if lib.gc_amx_init() != 0:
        _LOG.warning("Linux refused this process the AMX tile state; using oneDNN's products")
        return None
    pointer, pointers, int64 = ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_int64
    lib.gc_edge_mlp.argtypes = [pointer, pointer, pointers, pointers, ctypes.POINTER(int64),
                                int64, pointer, int64, int64, int64] + [pointer] * 6 + [
                                int64, int64]
    lib.gc_edge_mlp.restype = ctypes.c_int
    return lib


def _build() -> Path:
    """Compile the kernel unless a library of this source and compiler is in the cache."""
    from torch._inductor.cpp_builder import get_cpp_compiler
    from torch._inductor.runtime.cache_dir_utils import cache_dir
    compiler = get_cpp_compiler()  # Inductor's (it honours CXX), told the source is C
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
        subprocess.run([compiler, "-x", "c", str(Path(work) / _SOURCE), "-o", str(built),
                        *_FLAGS], capture_output=True, check=True)
        os.replace(built, target)  # atomic: a concurrent build leaves one whole library
    return target


def pack(weight: torch.Tensor) -> torch.Tensor:
    """A bf16 weight [K, N] in the kernel's AMX layout: for each 16 output columns, the K
    rows in pairs ([N / 16, K / 2, 16, 2])."""
    k, n = weight.shape
    return (weight.to(torch.bfloat16).reshape(k // 2, 2, n // 16, 16)
            .permute(2, 0, 3, 1).contiguous())


class FusedEdgeMlp(NamedTuple):
    """An edge MLP's weights as the kernel takes them (see fused_edge_mlp)."""

    w_edge: torch.Tensor | None  # packed (pack); None where the edge latents are no input
    b1: torch.Tensor             # float32 [L]
    w2: torch.Tensor             # packed
    b2: torch.Tensor
    scale: torch.Tensor          # LayerNorm, float32 [L]
    offset: torch.Tensor


def fused_edge_mlp(w_edge: torch.Tensor | None, weights: tuple[torch.Tensor, ...],
                   biases: tuple[torch.Tensor, ...],
                   norm: tuple[torch.Tensor, torch.Tensor]) -> FusedEdgeMlp:
    """The kernel's form of an edge MLP of two layers and a LayerNorm (bf16 weights); w_edge:
    the first layer's block for the edge latents, if they are an input."""
    width = weights[1].shape[0]
    if len(weights) != 2 or width % 32 or weights[1].shape[1] != width:
        raise ValueError("the AMX edge kernel takes two-layer MLPs of one width divisible by "
                         "32")
    return FusedEdgeMlp(None if w_edge is None else pack(w_edge), biases[0].float(),
                        pack(weights[1]), biases[1].float(), norm[0].float(), norm[1].float())


@torch.library.custom_op("graphcast::amx_edge_mlp", mutates_args=("edge", "sums"))
def edge_mlp(edge: torch.Tensor | None, sums: torch.Tensor, receivers: torch.Tensor,
             tables: list[torch.Tensor], indices: list[torch.Tensor | None],
             w_edge: torch.Tensor | None, b1: torch.Tensor, w2: torch.Tensor,
             b2: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor) -> None:
    """Each receiver's messages summed into sums [N, B, L]: float32 sums are added to (the
    encoder's chunks share them); bf16 ones are overwritten, every row (no float32 buffer to
    zero, fill and convert). edge [E, B, L] += its messages if given (then w_edge is its
    first-layer block). The first layer's other terms are tables[t] [n_t, B or 1, L] at rows
    indices[t] [E] (None: the edge's own row); edges sorted by receiver. See the C file."""
    lib = library()
    batch, latent = sums.shape[1:]
    if not _valid(edge, sums, receivers, tables, indices, w_edge, (b1, w2, b2, scale, offset)):
        raise ValueError("the AMX edge kernel takes contiguous CPU tensors: bf16 latents and "
                         "weights, int64 indices, float32 biases and norms, float32 or bf16 "
                         "sums, one latent width divisible by 32, at most three terms")
    if lib is None:
        raise RuntimeError("the AMX edge kernel is not available on this host")

    def address(t: torch.Tensor | None) -> int | None:
        return None if t is None else t.data_ptr()

    status = lib.gc_edge_mlp(
        address(edge), address(w_edge),
        (ctypes.c_void_p * len(tables))(*map(address, tables)),
        (ctypes.c_void_p * len(indices))(*map(address, indices)),
        (ctypes.c_int64 * len(tables))(*(int(t.shape[1] != 1) for t in tables)),
        len(tables), receivers.data_ptr(), batch, latent, len(receivers),
        *(t.data_ptr() for t in (b1, w2, b2, scale, offset, sums)),
        int(sums.dtype == torch.bfloat16), len(sums))
    if status == 1:
        raise MemoryError("the AMX edge kernel could not allocate its scratch memory")
    if status != 0:
        raise ValueError(f"the AMX edge kernel refused its arguments (status {status})")


def _valid(edge, sums, receivers, tables, indices, w_edge, weights) -> bool:
    """Whether edge_mlp's arguments have the types, layouts and shapes the kernel reads."""
    def ok(t: torch.Tensor, dtype: torch.dtype) -> bool:
        return t.dtype == dtype and t.is_contiguous() and t.device.type == "cpu"

    bf16, latent = torch.bfloat16, sums.shape[-1]
    b1, w2, b2, scale, offset = weights
    return (latent % 32 == 0 and (ok(sums, torch.float32) or ok(sums, bf16))
            and ok(receivers, torch.int64)
            and (edge is None) == (w_edge is None) and len(tables) == len(indices) <= 3
            and (edge is None or (ok(edge, bf16) and ok(w_edge, bf16)
                                  and edge.shape == (len(receivers),) + sums.shape[1:]))
            and all(ok(t, bf16) and t.shape[-1] == latent for t in tables)
            and all(i is None or (ok(i, torch.int64) and len(i) == len(receivers))
                    for i in indices)
            and ok(w2, bf16) and all(ok(v, torch.float32) for v in (b1, b2, scale, offset)))


@edge_mlp.register_fake
def _edge_mlp_shape(*args) -> None:
    return None
