"""Row-split parallel loops: every convolution's threads split the image by rows, not channels.

MetaSchedule fuses a kernel's outer tile loops into one parallel loop, and TVM's thread pool
hands each thread one contiguous chunk of it. With the output-channel tile outermost (the
multi-level tiling's order), a depthwise convolution on two threads writes channels ``[0, C/2)``
on one core and ``[C/2, C)`` on the other; the 1x1 convolution after it reads every channel for
each of its outputs, so half its input comes from the other core's cache. On a 2-core Xeon
(``rocketlake``) such kernels ran 1.3-2x slower inside a full run than called again at once
(``bench/kernel_profile.py --again``).

A target with ``split_rows: true`` lowers every fused function with :data:`ATTR`. For those:

- :func:`rows_first` (a pass of the TIR pipeline) permutes each parallel loop so that its
  output-channel digit varies fastest: the same iterations, each one unchanged, in an order whose
  first half is the first half of the rows. Any order of a parallel loop is valid.
- :func:`row_splittable` (a MetaSchedule postproc while tuning, :func:`postprocs`) rejects
  schedules that no such permutation splits by rows: those whose parallel loop holds no spatial
  tile, only channels.

Layers whose output is smaller than :data:`MIN_ROWS` rows keep any split: there the weights,
which a channel split halves per core, outweigh the activations.
"""
from __future__ import annotations

from typing import Any

ATTR = "tvm_ofa.split_rows"
MIN_ROWS = 14


def compute_block(loop: Any) -> Any:
    """The block realize under ``loop`` that reduces (else the first one), or None."""
    import tvm_ffi
    from tvm import s_tir, tirx

    blocks: list = []
    tvm_ffi.structural_map(loop.body, (s_tir.SBlockRealize, lambda r: blocks.append(r) or r))
    if not blocks:
        return None
    return next((b for b in blocks if any(iv.iter_type == tirx.IterVar.CommReduce
                                          for iv in b.block.iter_vars)), blocks[0])


def binding_at(value: Any, var: Any, k: int, analyzer: Any) -> Any:
    """``value`` (a block binding) with the loop variable ``var`` at ``k`` and every other
    variable at 0, simplified (a scheduled kernel's loop variables share one integer type)."""
    import tvm_ffi
    from tvm import tirx

    return analyzer.simplify(tvm_ffi.structural_map(
        value, (tirx.Var, lambda v: tirx.const(k if v.same_as(var) else 0, var.ty))))


def _channel_digit(loop: Any, analyzer: Any) -> tuple[int, int] | None:
    """``(F, S)`` when ``loop`` (a parallel loop of extent ``F * S``) splits the channels of a
    4-D output of at least :data:`MIN_ROWS` rows between its halves, and the channel depends on
    the loop variable ``v`` only through ``v // S``; ``(0, 0)`` when it splits channels otherwise;
    None when it does not split channels (or is not such a loop)."""
    import tvm_ffi
    from tvm import tirx

    real = compute_block(loop)
    if real is None:
        return None
    data = [(iv, val) for iv, val in zip(real.block.iter_vars, real.iter_values)
            if iv.iter_type == tirx.IterVar.DataPar]
    if len(data) != 4 or int(data[2][0].dom.extent) < MIN_ROWS:
        return None
    var, extent, channel = loop.loop_var, int(loop.extent), data[1][1]

    def at(k: int) -> Any:
        return binding_at(channel, var, k, analyzer)

    first = at(0)
    if extent < 2 or tvm_ffi.structural_equal(first, at(extent // 2)):
        return None
    # the first change of channel, looked for among the divisors of the extent (a few dozen
    # binding evaluations, not one per iteration), and no change just before it
    stride = next((d for d in range(2, extent) if extent % d == 0
                   and not tvm_ffi.structural_equal(at(d), first)), 0)
    if not stride or not tvm_ffi.structural_equal(at(stride - 1), first):
        return 0, 0
    return extent // stride, stride


def _permuted(loop: Any, channels: int, stride: int) -> Any:
    import tvm
    import tvm.sym
    import tvm_ffi
    from tvm import s_tir, tirx

    var = loop.loop_var
    # v' = rest * F + channel digit  <=>  v = (v' % F) * S + v' // F
    order = tirx.floormod(var, channels) * stride + tirx.floordiv(var, channels)
    analyzer = tvm.sym.Analyzer()
    analyzer.bind(var, tvm.ir.Range.from_min_extent(0, int(loop.extent)))

    def sub(expr: Any) -> Any:
        return analyzer.simplify(tvm_ffi.structural_map(
            expr, (tirx.Var, lambda v: order if v.same_as(var) else v)))

    def on_realize(r: Any) -> Any:
        return s_tir.SBlockRealize([sub(v) for v in r.iter_values], sub(r.predicate), r.block)

    body = tvm_ffi.structural_map(loop.body, (s_tir.SBlockRealize, on_realize))
    return tirx.For(var, loop.min, loop.extent, loop.kind, body, loop.thread_binding,
                    loop.annotations)


def parallel_loops(func: Any) -> list:
    """The parallel loops of ``func``, outermost first."""
    import tvm_ffi
    from tvm import tirx

    loops: list = []
    tvm_ffi.structural_map(func.body, (tirx.For, lambda f: loops.append(f) or f
                                       if f.kind == tirx.ForKind.PARALLEL else f))
    return loops


def marked(func: Any) -> bool:
    """Whether ``func`` was lowered for a ``split_rows`` target."""
    return bool((func.attrs or {}).get(ATTR, False))


def rows_first(func: Any) -> Any:
    """``func`` (a scheduled PrimFunc) with each parallel loop that splits channels permuted to
    split rows (see the module docstring); other loops, and unmarked functions, unchanged."""
    import tvm.sym
    import tvm_ffi
    from tvm import tirx

    if not marked(func):
        return func
    analyzer = tvm.sym.Analyzer()

    def on_loop(loop: Any) -> Any:
        if loop.kind != tirx.ForKind.PARALLEL:
            return loop
        digit = _channel_digit(loop, analyzer)
        return loop if not digit or not digit[0] else _permuted(loop, *digit)

    return func.with_body(tvm_ffi.structural_map(func.body, (tirx.For, on_loop)))


def row_splittable(func: Any) -> bool:
    """Whether :func:`rows_first` splits every parallel loop of ``func`` that splits the channels
    of a large enough output by rows instead (always true for an unmarked function)."""
    import tvm.sym

    if not marked(func):
        return True
    analyzer = tvm.sym.Analyzer()
    return all(_channel_digit(loop, analyzer) != (0, 0) for loop in parallel_loops(func))


def postprocs(target: Any) -> list:
    """MetaSchedule's postprocs for ``target``, then one that rejects schedules of marked
    functions that :func:`row_splittable` refuses."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.postproc import Postproc, PyPostproc

    @derived_object
    class RowSplittable(PyPostproc):
        def _initialize_with_tune_context(self, context: Any) -> None:
            pass

        def apply(self, sch: Any) -> bool:
            return row_splittable(sch.mod["main"])

        def clone(self) -> Any:
            return RowSplittable()

    kind = "cuda" if target.kind.name == "cuda" else "llvm"
    return list(Postproc.create(kind)) + [RowSplittable()]


def _outward(tile: list[int], k: int) -> list[int] | None:
    """A 4-level tile decision with ``k`` more of its factor in the outermost level, taken from the
    second level first, then the third; None when ``k`` does not divide what those hold."""
    if tile[1] % k == 0:
        return [tile[0] * k, tile[1] // k, tile[2], tile[3]]
    if k % tile[1] == 0 and tile[2] % (k // tile[1]) == 0:
        return [tile[0] * k, 1, tile[2] // (k // tile[1]), tile[3]]
    return None


def _outward_variants(rows: list[int], cols: list[int]) -> list[tuple[list[int], list[int]]]:
    """Row and column tile decisions with spatial factors moved to the outermost level, those that
    keep the innermost two levels (the kernel's register and cache tiles) first, fewest moved next."""
    out = []
    for ky in (d for d in range(1, rows[1] * rows[2] + 1) if rows[1] * rows[2] % d == 0):
        for kx in (d for d in range(1, cols[1] * cols[2] + 1) if cols[1] * cols[2] % d == 0):
            r, c = _outward(rows, ky), _outward(cols, kx)
            if r is not None and c is not None and ky * kx > 1:
                out.append(((r[2] != rows[2] or c[2] != cols[2], ky * kx), (r, c)))
    return [v for _, v in sorted(out, key=lambda t: t[0])]


def row_split_schedules(mod: Any, trace: Any, postprocs: list, limit: int = 2,
                        tries: int = 12) -> list:
    """Schedules of ``mod`` (marked) from ``trace`` (a record of the unmarked workload) that
    :func:`row_splittable` accepts: the trace itself if it is, then variants with row and column
    tiles moved to the outermost tile level, where the parallel loop can take them, at most
    ``limit`` in all (for seeding a ``split_rows`` target from another target's records).

    ``postprocs`` are the target's with the row-split check (:func:`postprocs`), initialized.
    """
    from tvm import s_tir

    tiles = [i for i in trace.insts if i.kind.name == "SamplePerfectTile"
             and len(trace.get_decision(i)) == 4]
    changes: list[dict] = [{}]
    if len(tiles) == 4:  # one spatial tile per output axis (n, c, h, w): a convolution
        rows, cols = ([int(v) for v in trace.get_decision(tiles[k])] for k in (2, 3))
        changes += [{tiles[2]: r, tiles[3]: c} for r, c in _outward_variants(rows, cols)[:tries]]
    out = []
    for change in changes:
        t = trace
        for inst, decision in change.items():
            t = t.with_decision(inst, decision, remove_postproc=True)
        sch = s_tir.Schedule(mod)
        try:
            t.apply_to_schedule(sch, remove_postproc=True)
            # the mark MetaSchedule puts between a design and its postprocs: a record replayed
            # without its postprocs stops there
            sch.enter_postproc()
            if all(p.apply(sch) for p in postprocs):
                out.append(sch)
        except Exception:  # noqa: BLE001 - a variant TVM refuses is just not a candidate
            continue
        if len(out) >= limit:
            break
    return out
