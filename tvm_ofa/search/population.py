"""Vectorized populations: a batch of archs held as ``(ks, e, d, r)`` int32 arrays, one row per
arch (``ks``, ``e``: ``(N, n_blocks)``; ``d``: ``(N, n_stages)``; ``r``: ``(N,)``).

These are the arrays the latency predictor (``predict(arrays=...)``) and the accuracy predictor
take, so a search never builds ``ArchConfig`` objects inside its loop. The operations mirror
``SearchSpace.sample/mutate/crossover/canonical`` gene for gene.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from tvm_ofa.arch import ArchConfig, SearchSpace, archs_to_arrays, arrays_to_archs

Genes = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""``(ks, e, d, r)`` int32 arrays of a population."""


def _pick(choices: Sequence[int], shape: tuple[int, ...] | int, rng: np.random.Generator) -> np.ndarray:
    values = np.asarray(choices, dtype=np.int32)
    return values[rng.integers(0, len(values), size=shape)]


def size(genes: Genes) -> int:
    """Number of archs in ``genes``."""
    return int(genes[3].shape[0])


def empty(space: SearchSpace) -> Genes:
    """A population of no arch with the space's row shapes."""
    return (np.zeros((0, space.n_blocks), np.int32), np.zeros((0, space.n_blocks), np.int32),
            np.zeros((0, space.n_stages), np.int32), np.zeros(0, np.int32))


def canonicalize(space: SearchSpace, genes: Genes) -> Genes:
    """Set every skipped slot to the last active value of its stage (as ``ArchConfig.canonical``),
    so that equal networks have equal rows.

    Parameters
    ----------
    space : SearchSpace
    genes : Genes

    Returns
    -------
    Genes
        New arrays; the input is not modified.
    """
    ks, e, d, r = genes
    md = space.max_depth
    pos = np.tile(np.arange(md), space.n_stages)
    base = np.repeat(np.arange(space.n_stages) * md, md)
    depth = np.repeat(d, md, axis=1)
    # a depth of 0 would read its own first slot, as ArchConfig.canonical does
    src = base[None, :] + np.minimum(pos[None, :], np.maximum(depth - 1, 0))
    return (np.take_along_axis(ks, src, axis=1).astype(np.int32), np.take_along_axis(e, src, axis=1).astype(np.int32),
            d.astype(np.int32, copy=True), r.astype(np.int32, copy=True))


def sample(space: SearchSpace, n: int, rng: np.random.Generator) -> Genes:
    """``n`` archs drawn uniformly per gene (as ``SearchSpace.sample``), canonicalized."""
    genes = (_pick(space.ks_choices, (n, space.n_blocks), rng), _pick(space.e_choices, (n, space.n_blocks), rng),
             _pick(space.d_choices, (n, space.n_stages), rng), _pick(space.resolutions, n, rng))
    return canonicalize(space, genes)


def mutate(space: SearchSpace, genes: Genes, prob: float, rng: np.random.Generator,
           mutate_resolution: bool = True) -> Genes:
    """Resample each gene with probability ``prob``: kernel and expand per slot, depth per stage,
    the resolution (once-for-all's mutation). Returns canonical rows."""
    ks, e, d, r = genes

    def resample(values: np.ndarray, choices: Sequence[int]) -> np.ndarray:
        hit = rng.random(values.shape) < prob
        return np.where(hit, _pick(choices, values.shape, rng), values)

    ks, e, d = resample(ks, space.ks_choices), resample(e, space.e_choices), resample(d, space.d_choices)
    if mutate_resolution:
        r = resample(r, space.resolutions)
    return canonicalize(space, (ks, e, d, r))


def crossover(space: SearchSpace, a: Genes, b: Genes, rng: np.random.Generator) -> Genes:
    """Children whose genes each come from parent ``a`` or ``b`` of the same row with equal
    probability. Returns canonical rows."""
    out = tuple(np.where(rng.random(x.shape) < 0.5, x, y) for x, y in zip(a, b))
    return canonicalize(space, out)  # type: ignore[arg-type]


def take(genes: Genes, index: np.ndarray) -> Genes:
    """Rows ``index`` of ``genes`` (an integer or boolean index)."""
    return tuple(g[index] for g in genes)  # type: ignore[return-value]


def concat(parts: Sequence[Genes]) -> Genes:
    """Rows of several populations, in order."""
    return tuple(np.concatenate([p[i] for p in parts], axis=0) for i in range(4))  # type: ignore[return-value]


def keys(genes: Genes) -> np.ndarray:
    """One opaque, comparable key per row (equal rows, equal keys); canonicalize first so that
    equal networks share a key."""
    ks, e, d, r = genes
    mat = np.ascontiguousarray(np.concatenate([ks, e, d, r[:, None]], axis=1).astype(np.int32))
    return mat.view(np.dtype((np.void, mat.shape[1] * 4))).ravel()


def unique(genes: Genes) -> tuple[Genes, np.ndarray]:
    """Distinct rows in first-seen order and the index of each in ``genes``.

    Rows are compared as given: pass canonical rows to compare networks.
    """
    _, first = np.unique(keys(genes), return_index=True)
    first = np.sort(first)
    return take(genes, first), first


def contains(space: SearchSpace, genes: Genes) -> np.ndarray:
    """Whether each row lies in the space (active slots, depths and resolution in their choices)."""
    ks, e, d, r = genes
    active = space.active_mask(d)
    ok_k = np.isin(ks, space.ks_choices) | ~active
    ok_e = np.isin(e, space.e_choices) | ~active
    return ok_k.all(1) & ok_e.all(1) & np.isin(d, space.d_choices).all(1) & np.isin(r, space.resolutions)


def encode(space: SearchSpace, genes: Genes) -> np.ndarray:
    """One-hot encoding equal to ``SearchSpace.encode_batch`` of the same archs: kernel and expand
    per active slot, then the resolution. Shape ``(N, space.encoding_size)``, float32."""
    return space.encode_arrays(*genes)


def from_archs(archs: Sequence[ArchConfig]) -> Genes:
    """Arrays of a list of archs (one row each)."""
    return archs_to_arrays(list(archs))  # type: ignore[return-value]


def to_archs(genes: Genes) -> list[ArchConfig]:
    """``ArchConfig`` of each row."""
    return arrays_to_archs(*genes)


def smallest(space: SearchSpace) -> Genes:
    """The one-row population of ``space.smallest()``."""
    return from_archs([space.smallest()])
