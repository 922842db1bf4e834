"""The compiler half: lowering equivalence, tuning database reuse and resume, artifacts that load in
a fresh process, RPC measurement on loopback, aarch64 export.

Tuning tests use a MobileNetV3-like block stack with few distinct workloads (a full OFA subnet has
~50 tasks, minutes of tuning on 2 cores); lowering and artifact tests use real OFA extracts.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
torch = pytest.importorskip("torch")

from conftest import bench_script  # noqa: E402
from tvm_ofa.compiler.lower import Lowering  # noqa: E402
from tvm_ofa.targets import parse_target  # noqa: E402


def host_cfg(**over):
    return parse_target({"name": "host-test", "target": {"kind": "llvm", "mcpu": "native"},
                         "threads": 2, "tuning": {"trials_per_task": 2, "trials_per_round": 2},
                         **over}, "host-test.yaml")


class MiniMBV3(torch.nn.Module):
    """Stem, one inverted residual with squeeze-excite and a residual add, head: 6 tasks."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.se_reduce, self.se_expand = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 1)
        self.pw = nn.Sequential(nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.stem(x)
        y = self.dw(x)
        s = torch.nn.functional.hardsigmoid(self.se_expand(torch.relu(self.se_reduce(y.mean((2, 3), keepdim=True)))))
        x = x + self.pw(y * s)
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def mini():
    return mini_module()


def mini_module():
    """The mini net with randomized statistics (seed 0): the same in every process."""
    from conftest import randomize_

    torch.manual_seed(0)
    m = MiniMBV3()
    randomize_(m)
    return m.eval()


@pytest.fixture(scope="module")
def tiny_sub(tiny_supernet, tiny_space):
    return tiny_space.smallest(32), tiny_supernet.extract(tiny_space.smallest(32)).eval()


def _torch_out(module, x):
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def test_lowering_matches_torch(tiny_sub):
    from tvm import relax

    from tvm_ofa.compiler.build import build
    from tvm_ofa.compiler.lower import lower_module

    arch, sub = tiny_sub
    low = lower_module(sub, (1, 3, 32, 32))
    assert low.output_shape == (1, 10) and len(low.weights_sha256) == 64
    names = [gv.name_hint for gv in low.mod.get_global_vars()]
    assert not any("batch_norm" in n for n in names), "BN should be folded into the convs"
    vm = relax.VirtualMachine(build(low.mod, host_cfg().tvm_target()), tvm.cpu())
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype("float32")
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    want = _torch_out(sub, x)
    assert np.abs(got - want).max() <= 1e-4 and np.abs(want).max() > 1e-3


def test_repair_drops_torn_lines(tmp_path):
    from tvm_ofa.compiler.store import (RECORD_FILE, WORKLOAD_FILE, DatabaseWarning,
                                           repair)

    (tmp_path / WORKLOAD_FILE).write_text('["1", "a"]\n{garbage\n["3", "c"]\n')
    (tmp_path / RECORD_FILE).write_text('[0, {"r": 1}]\n[1, {"r": 2}]\n[2, {"r": 3}]\n[2, {"tor')
    with pytest.warns(DatabaseWarning, match="skipped 3 unreadable"):
        assert repair(tmp_path) == 3  # the bad workload, its record, the torn record
    assert (tmp_path / WORKLOAD_FILE).read_text().splitlines() == ['["1", "a"]', '["3", "c"]']
    recs = [json.loads(line) for line in (tmp_path / RECORD_FILE).read_text().splitlines()]
    assert recs == [[0, {"r": 1}], [1, {"r": 3}]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert repair(tmp_path) == 0


def test_one_tuning_process_per_database(mini, tmp_path):
    """Two processes appending to one JSON database number their new workloads alike, so records
    end up pointing at the other's workloads: a second writer is refused, in one line; a writer
    killed with SIGKILL leaves no stale lock; one process may nest the lock (collect tunes)."""
    from conftest import lock_held_elsewhere

    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.store import DatabaseBusy, writer_lock
    from tvm_ofa.compiler.tune import TuningError, tune

    cfg = host_cfg()
    log_dir = cfg.log_dir(tmp_path)
    low = lower_module(mini, (1, 3, 32, 32))
    with lock_held_elsewhere(log_dir) as pid:
        with pytest.raises(DatabaseBusy, match=rf"^{log_dir}: another process \(pid {pid}\) is writing") as info:
            tune(cfg, low, log_root=tmp_path)
        assert "\n" not in str(info.value)
    with writer_lock(log_dir), writer_lock(log_dir):  # the holder was killed: free, and it nests here
        pass

    # a lowering that does not match the target's prepack option would tune workloads that its
    # builds never look up: refused in one line, naming the file and field
    with pytest.raises(TuningError, match=r"^host-test.yaml: prepack: the target says true") as info:
        tune(host_cfg(prepack=True), lower_module(mini, (1, 3, 32, 32)), log_root=tmp_path)
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def tuned(mini, tmp_path_factory):
    """One tune of the mini net into a fresh log root (shared by the reuse/resume tests)."""
    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.tune import tune

    root = tmp_path_factory.mktemp("logs")
    cfg = host_cfg()
    low = lower_module(mini, (1, 3, 32, 32))
    events = []
    rep = tune(cfg, low, log_root=root, progress=events.append, min_repeat_ms=5)
    return cfg, low, root, rep, events


@pytest.mark.slow
def test_tune_writes_database_and_progress(tuned):
    cfg, low, root, rep, events = tuned
    assert rep.tasks_total >= 4 and rep.tasks_tuned == rep.tasks_total and rep.new_trials > 0
    assert events[0].trials == 0 and events[-1].trials == rep.new_trials
    assert events[-1].best_ms is not None and rep.estimated_ms > 0
    assert events[-1].tasks_done == events[-1].tasks_total == rep.tasks_total
    log_dir = cfg.log_dir(root)
    prov = json.loads((log_dir / "provenance.json").read_text())
    assert prov["cpu"] == log_dir.name and prov["cpu_features"] and prov["threads"] == 2
    assert prov["tvm_version"] == tvm.__version__


@pytest.mark.slow
def test_second_tune_runs_zero_trials(tuned):
    from tvm_ofa.compiler.tune import tune

    cfg, low, root, _, _ = tuned
    rep = tune(cfg, low, log_root=root)
    assert rep.new_trials == 0 and rep.tasks_skipped == rep.tasks_total


@pytest.mark.slow
def test_a_finished_task_without_records_is_tuned_again(tuned):
    """Records that MetaSchedule cannot load back are set aside; the task they belonged to is
    marked finished, but with no record left it is tuned again rather than left untuned."""
    from tvm_ofa.compiler.store import RECORD_FILE
    from tvm_ofa.compiler.tune import tune

    cfg, low, root, _, _ = tuned
    path = cfg.log_dir(root) / RECORD_FILE
    lines = path.read_text().splitlines()
    path.write_text("".join(ln + "\n" for ln in lines if json.loads(ln)[0] != 0))
    rep = tune(cfg, low, log_root=root, min_repeat_ms=5)
    assert rep.tasks_tuned == 1 and rep.new_trials > 0
    assert any(json.loads(ln)[0] == 0 for ln in path.read_text().splitlines())


@pytest.mark.slow
def test_seeding_from_another_cpus_folder_times_its_schedules_here(tuned, tmp_path):
    """A CPU with no records starts from another CPU's: their best schedules are rebuilt, timed
    here and kept as this machine's records (``--trials 0``: nothing else), the other folder is
    only read, and a later tune goes on from them."""
    from tvm_ofa.compiler.store import RECORD_FILE, WORKLOAD_FILE, open_database
    from tvm_ofa.compiler.seed import SeedError
    from tvm_ofa.compiler.tune import TuningError, coverage, tune

    cfg, low, root, first, _ = tuned
    own = cfg.log_dir(tmp_path)
    other = own.parent / "othercpu"
    other.mkdir(parents=True)
    for f in (WORKLOAD_FILE, RECORD_FILE):
        shutil.copy(cfg.log_dir(root) / f, other / f)
    before = {f: (other / f).read_bytes() for f in (WORKLOAD_FILE, RECORD_FILE)}
    assert coverage(cfg, low, tmp_path) == (0, first.tasks_total)

    events = []
    rep = tune(cfg, low, log_root=tmp_path, trials_per_task=0, seed_from="othercpu",
               progress=events.append, min_repeat_ms=5)
    assert rep.seed_source == str(other) and rep.seeded_tasks == first.tasks_total
    assert rep.seed_measured >= rep.seeded_tasks and rep.new_trials == 0 and rep.tasks_tuned == 0
    assert events[-1].task_name == "seeding" and events[-1].trials == events[-1].trials_budget
    assert coverage(cfg, low, tmp_path) == (first.tasks_total, first.tasks_total)
    assert rep.estimated_ms > 0
    assert {f: (other / f).read_bytes() for f in before} == before  # the source is only read
    recs = open_database(own).db.get_all_tuning_records()
    assert len(recs) == rep.seed_measured
    assert all(str(r.target.attrs["mcpu"]) == own.name for r in recs)  # timed for this CPU

    # the seeded tasks are not finished: a tune with trials goes on from them, seeding nothing
    rep2 = tune(cfg, low, log_root=tmp_path, trials_per_task=4, seed_from="othercpu", min_repeat_ms=5)
    assert rep2.seeded_tasks == 0 and rep2.tasks_tuned == first.tasks_total and rep2.new_trials > 0

    with pytest.raises(SeedError, match=r"^nowhere: seed folder not found .*: othercpu\)$"):
        tune(cfg, low, log_root=tmp_path, trials_per_task=0, seed_from="nowhere")
    with pytest.raises(SeedError, match="is this machine's own log folder"):
        tune(cfg, low, log_root=tmp_path, trials_per_task=0, seed_from=str(own))
    with pytest.raises(TuningError, match=r"^trials per task must be positive \(0 only with"):
        tune(cfg, low, log_root=tmp_path, trials_per_task=0, transfer=False)


@pytest.mark.slow
def test_reseeding_times_the_other_cpus_schedules_beside_this_ones(tuned, tmp_path):
    """``reseed``: every task, tuned here or not, gets the other CPU's best schedules and its own
    best ones timed again in one run; nothing is tuned, and the build can only get faster records."""
    from tvm_ofa.compiler.store import RECORD_FILE, WORKLOAD_FILE, open_database
    from tvm_ofa.compiler.tune import TuningError, coverage, tune

    cfg, low, root, first, _ = tuned
    own = cfg.log_dir(tmp_path)
    other = own.parent / "othercpu"
    for d in (own, other):
        d.mkdir(parents=True, exist_ok=True)
        for f in (WORKLOAD_FILE, RECORD_FILE):
            shutil.copy(cfg.log_dir(root) / f, d / f)
    n_own = len(open_database(own).db.get_all_tuning_records())
    # without reseed, tasks tuned here are left alone
    assert tune(cfg, low, log_root=tmp_path, trials_per_task=0, seed_from="othercpu").seeded_tasks == 0

    rep = tune(cfg, low, log_root=tmp_path, trials_per_task=0, seed_from="othercpu", reseed=True,
               seed_top_k=1, min_repeat_ms=5)
    assert rep.seeded_tasks == first.tasks_total and rep.new_trials == 0
    # one schedule from each folder per task, committed with this run's times
    assert rep.seed_measured == 2 * first.tasks_total
    assert len(open_database(own).db.get_all_tuning_records()) == n_own + rep.seed_measured
    assert coverage(cfg, low, tmp_path) == (first.tasks_total,) * 2

    with pytest.raises(TuningError, match=r"^reseed needs seed_from \(--seed-from\)"):
        tune(cfg, low, log_root=tmp_path, trials_per_task=0, reseed=True)


@pytest.mark.slow
def test_records_of_another_thread_count_are_timed_again_not_reused(tuned, tmp_path):
    """Records timed with 2 threads live in ``<cpu>/``; the same target on 1 thread gets
    ``<cpu>-1threads/``, and its first tune seeds every task from the 2-thread records, timed
    on 1 thread, instead of building with them as they are."""
    from tvm_ofa.compiler.store import RECORD_FILE, WORKLOAD_FILE, other_threads_folder, read_provenance
    from tvm_ofa.compiler.tune import coverage, tune

    cfg, low, root, first, _ = tuned
    two = cfg.log_dir(tmp_path)
    two.mkdir(parents=True)
    for f in (WORKLOAD_FILE, RECORD_FILE, "provenance.json"):
        shutil.copy(cfg.log_dir(root) / f, two / f)
    one_cfg = host_cfg(threads=1)
    one = one_cfg.log_dir(tmp_path)
    assert two.name == cfg.host_cpu() and one.name == f"{cfg.host_cpu()}-1threads"
    assert other_threads_folder(one) == two and other_threads_folder(two) is None
    assert coverage(one_cfg, low, tmp_path)[0] == 0
    rep = tune(one_cfg, low, log_root=tmp_path, trials_per_task=0, min_repeat_ms=5)
    assert rep.seeded_tasks == first.tasks_total and rep.new_trials == 0
    assert coverage(one_cfg, low, tmp_path) == (first.tasks_total, first.tasks_total)
    assert read_provenance(one)["threads"] == 1 and read_provenance(two)["threads"] == 2


@pytest.mark.slow
def test_a_workload_never_tuned_starts_from_its_neighbours_schedules(tuned, mini, tmp_path):
    """The mini net tuned at 32 px; at 40 px every fused task is a new shape. Its tune first gives
    each the nearest tuned workload's schedules with the tilings refitted, timed here, and the
    library built with them computes what PyTorch does."""
    from tvm import relax

    from tvm_ofa.compiler.build import build
    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.seed import _fit_tiles, _nearest_tiles
    from tvm_ofa.compiler.store import RECORD_FILE, WORKLOAD_FILE, open_database
    from tvm_ofa.compiler.tune import coverage, tune

    # inner (vector, register) tiles are kept where they divide; the outermost takes the rest
    assert _fit_tiles([1, 10, 2, 8], 320) == [2, 10, 2, 8]
    assert _fit_tiles([2, 5, 4], 12) == [3, 1, 4] and _fit_tiles([1, 7, 8], 11) == [11, 1, 1]
    # at a prime extent the greedy fit leaves a scalar inner loop; the nearest fit keeps it wide
    assert _nearest_tiles([1, 7, 8], 11) == [1, 1, 11] and _nearest_tiles([1, 7, 8], 11, 8) == [1, 11, 1]
    assert _nearest_tiles([1, 10, 2, 8], 320) == [2, 10, 2, 8] and _nearest_tiles([4, 1, 32], 41) == [1, 1, 41]
    cfg, _, root, first, _ = tuned
    own = cfg.log_dir(tmp_path)
    own.mkdir(parents=True)
    for f in (WORKLOAD_FILE, RECORD_FILE):
        shutil.copy(cfg.log_dir(root) / f, own / f)
    low = lower_module(mini, (1, 3, 40, 40))
    covered, total = coverage(cfg, low, tmp_path)  # the SE and classifier shapes do not depend on it
    assert covered < total
    # no search (0 trials): the neighbours' schedules alone
    rep = tune(cfg, low, log_root=tmp_path, trials_per_task=0, min_repeat_ms=5)
    # every new workload gets one, the SE block's mean too (its blocks are named after the
    # module's variables: the trace's names are mapped onto this module's)
    assert rep.transferred_tasks == total - covered and rep.transfer_measured >= rep.transferred_tasks
    assert rep.new_trials == 0 and coverage(cfg, low, tmp_path) == (total, total)
    x = np.random.default_rng(0).standard_normal((1, 3, 40, 40)).astype("float32")
    lib = build(low.mod, cfg.tvm_target(), open_database(own).db)
    vm = relax.VirtualMachine(lib, tvm.cpu())
    assert np.abs(vm["main"](tvm.runtime.tensor(x)).numpy() - _torch_out(mini, x)).max() <= 1e-4
    # every transferred record marks where postprocessing begins, so an evolutionary search can
    # start from it: without the mark its replay applied the postprocessors twice and the whole
    # tune failed (old_outputs.size() == new_outputs.size())
    from tvm_ofa.compiler.store import _marked, _parse

    assert all(_marked(_parse(line)) for line in (own / RECORD_FILE).read_text().splitlines() if line.strip())
    rep = tune(cfg, low, log_root=tmp_path, trials_per_task=4, trials_per_round=4, min_repeat_ms=5)
    assert rep.new_trials > 0
    # without a neighbour (an empty folder), nothing is transferred
    assert tune(cfg, low, log_root=tmp_path / "empty", trials_per_task=1, trials_per_round=1,
                min_repeat_ms=5, strategy="replay-trace").transferred_tasks == 0


def test_records_without_the_postprocessing_mark_are_set_aside_when_a_folder_opens(tmp_path):
    import json as _json

    from tvm_ofa.compiler.store import REJECTED_FILE, RECORD_FILE, set_aside_unmarked

    def record(kinds):
        return _json.dumps([0, [[[[k, [], [], []] for k in kinds], []], [1e-5], None, []]])

    marked = record(["GetSBlock", "Split", "Annotate", "EnterPostproc", "Unannotate", "Parallel"])
    unmarked = record(["GetSBlock", "Split", "Annotate", "Unannotate", "Parallel"])
    by_hand = record(["GetSBlock"])  # no postprocessing steps: nothing to mark
    (tmp_path / RECORD_FILE).write_text("\n".join([marked, unmarked, by_hand, marked]) + "\n")
    assert set_aside_unmarked(tmp_path) == 1
    assert (tmp_path / RECORD_FILE).read_text().splitlines() == [marked, by_hand, marked]
    assert (tmp_path / REJECTED_FILE).read_text().splitlines() == [unmarked]
    assert set_aside_unmarked(tmp_path) == 0


@pytest.mark.slow
def test_a_lightly_tuned_workload_is_timed_beside_its_deeply_tuned_neighbours(mini, tmp_path):
    """A sweep of the space tunes each workload a little; the benchmark subnets' workloads get
    many more trials. A task tuned to fewer than half the target's trials gets, once, the
    schedules of its nearest neighbours tuned to at least that many, timed beside its own."""
    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.store import NEIGHBOURED_FILE, read_json
    from tvm_ofa.compiler.tune import tune

    cfg = host_cfg(tuning={"trials_per_task": 4, "trials_per_round": 2})
    fast = dict(log_root=tmp_path, min_repeat_ms=5, strategy="replay-trace")
    deep = tune(cfg, lower_module(mini, (1, 3, 32, 32)), **fast)  # 4 trials: tuned in depth
    low = lower_module(mini, (1, 3, 40, 40))
    light = tune(cfg, low, trials_per_task=1, trials_per_round=1, **fast)  # the new shapes at 1 trial
    # the new shapes' first neighbours include those tuned in depth
    assert deep.deepened_tasks == 0 and light.deepened_tasks == light.tasks_tuned > 0
    rep = tune(cfg, low, trials_per_task=0, **fast)
    assert rep.deepened_tasks == light.tasks_tuned > 0 and rep.new_trials == 0
    assert 0 <= rep.deepened_faster <= rep.deepened_tasks
    assert len(read_json(cfg.log_dir(tmp_path) / NEIGHBOURED_FILE)) == rep.deepened_tasks
    assert tune(cfg, low, trials_per_task=0, **fast).deepened_tasks == 0  # once per workload


@pytest.mark.slow
def test_prepacked_target_tunes_its_own_records_and_packs_weights_at_build(mini, tmp_path):
    """A ``prepack: true`` target: its functions carry the layout-free mark (other workloads than
    the plain lowering's), tuned schedules store the weights in their own layout, and the build
    packs them once (``_prepacked`` kernels called with folded constants); outputs unchanged."""
    from tvm import relax

    from tvm_ofa.compiler.build import apply_database, build
    from tvm_ofa.compiler.store import open_database
    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.tune import coverage, tune

    cfg = host_cfg(name="host-test-prepack", prepack=True)
    plain = lower_module(mini, (1, 3, 32, 32))
    low = lower_module(mini, (1, 3, 32, 32), lowering=cfg.lowering)
    marked = [gv.name_hint for gv, f in low.mod.functions_items() if "layout_free_buffers" in (f.attrs or {})]
    assert marked and not any("layout_free_buffers" in (f.attrs or {}) for _, f in plain.mod.functions_items())
    rep = tune(cfg, low, log_root=tmp_path, min_repeat_ms=5)
    assert rep.tasks_tuned == rep.tasks_total and coverage(cfg, low, tmp_path) == (rep.tasks_total,) * 2
    # the plain lowering's workloads are not these: nothing of it counts as tuned
    assert coverage(cfg, plain, tmp_path)[0] < rep.tasks_total
    db = open_database(cfg.log_dir(tmp_path)).db
    applied = apply_database(low.mod, cfg.tvm_target(), db)
    assert any(gv.name_hint.endswith("_prepacked") for gv in applied.get_global_vars())
    vm = relax.VirtualMachine(build(low.mod, cfg.tvm_target(), db), tvm.cpu())
    x = np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype("float32")
    assert np.abs(vm["main"](tvm.runtime.tensor(x)).numpy() - _torch_out(mini, x)).max() <= 1e-4


class StridedDW(torch.nn.Module):
    """Stride-2 depthwise convolutions at odd and even sizes, 3x3 to 7x7, between 1x1s."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 1), nn.ReLU(),
            nn.Conv2d(8, 8, 7, 2, 3, groups=8), nn.ReLU(),      # 15 -> 8
            nn.Conv2d(8, 16, 1), nn.Hardswish(),
            nn.Conv2d(16, 16, 5, 2, 2, groups=16), nn.ReLU(),   # 8 -> 4
            nn.Conv2d(16, 16, 3, 2, 1, groups=16, bias=False),  # 4 -> 2
        )

    def forward(self, x):
        return self.body(x)


def test_nchwc_lowering_matches_torch_keeps_the_workloads_and_tunes(mini, tiny_sub, tmp_path):
    """``nchwc: true``: convolutions whose channels are multiples of 8 run in NCHW8c (their own
    TIR blocks), with the elementwise ops, SE means and residual adds between them (no layout
    change inside a block); the parsed workloads of the convolutions are the plain lowering's;
    tuned and built with prepacked weights, it matches PyTorch; a plain lowering is refused."""
    from tvm import relax

    from tvm_ofa.compiler.build import build
    from tvm_ofa.compiler.store import open_database
    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.tune import TuningError, coverage, tune
    from tvm_ofa.predict.workloads import workload_from_mod

    def kernels(lowered):
        return [f for _, f in lowered.mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]

    def conv_keys(lowered):
        keys = (workload_from_mod(tvm.IRModule({"main": f})) for f in kernels(lowered))
        return sorted(w.key for w in keys if w is not None and w.kind in ("conv2d", "dwconv", "mean"))

    arch, sub = tiny_sub
    res = arch.resolution
    plain = lower_module(sub, (1, 3, res, res))
    low = lower_module(sub, (1, 3, res, res), lowering=Lowering(nchwc=True))
    assert low.lowering.nchwc == 8 and not plain.lowering.nchwc
    scripts = [f.script() for f in kernels(low)]
    assert any('sblock("depthwise_conv2d_nchwc"' in s for s in scripts)
    assert not any('sblock("group_conv2d_nchw"' in s for s in scripts)
    assert sum('sblock("conv2d_nchw"' in s for s in scripts) == 1  # the RGB stem stays NCHW
    # one layout change in (after the stem) and one out (before the classifier)
    assert low.mod["main"].script().count("te_layout_transform") == 2
    assert conv_keys(low) == conv_keys(plain)
    x = np.random.default_rng(6).standard_normal((1, 3, res, res)).astype("float32")
    vm = relax.VirtualMachine(build(low.mod, host_cfg().tvm_target()), tvm.cpu())
    assert np.abs(vm["main"](tvm.runtime.tensor(x)).numpy() - _torch_out(sub, x)).max() <= 1e-4

    # mini's SE reduce has 4 channels: that convolution stays NCHW, the rest is blocked
    cfg = host_cfg(name="host-test-nchwc", prepack=True, nchwc=True)
    low = lower_module(mini, (1, 3, 32, 32), lowering=cfg.lowering)
    assert any('sblock("conv2d_nchwc"' in f.script() for f in kernels(low))
    rep = tune(cfg, low, log_root=tmp_path, min_repeat_ms=5)
    assert rep.tasks_tuned == rep.tasks_total and coverage(cfg, low, tmp_path) == (rep.tasks_total,) * 2
    db = open_database(cfg.log_dir(tmp_path)).db
    vm = relax.VirtualMachine(build(low.mod, cfg.tvm_target(), db), tvm.cpu())
    x = np.random.default_rng(7).standard_normal((1, 3, 32, 32)).astype("float32")
    assert np.abs(vm["main"](tvm.runtime.tensor(x)).numpy() - _torch_out(mini, x)).max() <= 1e-4
    with pytest.raises(TuningError, match=r"^host-test.yaml: nchwc: the target says 8"):
        tune(cfg, lower_module(mini, (1, 3, 32, 32), lowering=Lowering(prepack=True)), log_root=tmp_path)


class MixedBlocks(torch.nn.Module):
    """Channel counts of both kinds: 16 (NCHW16c under ``nchwc: 16``) and 24 or 8 (NCHW8c)."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.se_reduce, self.se_expand = nn.Conv2d(16, 8, 1), nn.Conv2d(8, 16, 1)
        self.project = nn.Sequential(nn.Conv2d(16, 24, 1, bias=False), nn.BatchNorm2d(24))
        self.expand = nn.Sequential(nn.Conv2d(24, 48, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU())
        self.fc = nn.Linear(48, 10)

    def forward(self, x):
        y = self.dw(self.stem(x))
        s = torch.nn.functional.hardsigmoid(self.se_expand(torch.relu(self.se_reduce(y.mean((2, 3), keepdim=True)))))
        return self.fc(self.expand(self.project(y * s)).mean((2, 3)))


def test_nchwc16_gives_each_tensor_the_widest_block_its_channels_allow(mini, tmp_path):
    """``nchwc: 16``: 16-channel tensors are NCHW16c, 24- and 8-channel ones NCHW8c, so some
    convolutions change block between input and output; the workloads parse as the plain
    lowering's; tuned and built with prepacked weights it matches PyTorch; the target key takes
    true, false, 8 or 16 and nothing else."""
    from tvm import relax

    from tvm_ofa.compiler.build import build
    from tvm_ofa.compiler.store import open_database
    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.tune import tune
    from tvm_ofa.predict.workloads import workload_from_mod
    from tvm_ofa.errors import ConfigError

    from conftest import randomize_

    torch.manual_seed(0)
    net = MixedBlocks()
    randomize_(net)
    net.eval()
    cfg = host_cfg(name="host-test-nchwc16", prepack=True, nchwc=16)
    assert cfg.lowering.nchwc == 16 and host_cfg(nchwc=True).lowering.nchwc == 8
    for bad in (12, "16", 1.5):
        with pytest.raises(ConfigError, match=r"^host-test.yaml: nchwc: expected true, false or a block of 8 or 16"):
            host_cfg(nchwc=bad)
    low = lower_module(net, (1, 3, 32, 32), lowering=cfg.lowering)
    main = low.mod["main"].script()
    calls = re.findall(r"(\w+) = R\.call_tir\((\w+), \((\w+),.*out_ty=R\.Tensor\(\(([0-9, ]+)\)", main)
    shape = {var: tuple(int(v) for v in shp.split(", ")) for var, _, _, shp in calls}
    # (input block, output block) of each blocked convolution: 16 -> 24 channels is 16c in, 8c
    # out; 24 -> 48 is 8c in, 16c out; the SE pair 16 -> 8 -> 16
    blocks = {(shape[arg][-1], out[-1]) for var, fn, arg, _ in calls if fn.startswith("fused_conv2d")
              and arg in shape and len(shape[arg]) == 5 and len(out := shape[var]) == 5}
    assert blocks == {(16, 16), (16, 8), (8, 16)}
    assert main.count("te_layout_transform") == 2
    # a convolution with a tensor no block divides (mini's 4-channel SE) stays NCHW, between
    # blocked ones, as under ``nchwc: true``
    assert lower_module(mini, (1, 3, 32, 32), lowering=Lowering(nchwc=16)).mod["main"].script().count("te_layout_transform") == 4
    plain = lower_module(net, (1, 3, 32, 32))

    def keys(lowered):
        ks = (workload_from_mod(tvm.IRModule({"main": f})) for _, f in lowered.mod.functions_items()
              if isinstance(f, tvm.tirx.PrimFunc))
        return sorted(w.key for w in ks if w is not None)

    assert keys(low) == keys(plain)
    rep = tune(cfg, low, log_root=tmp_path, min_repeat_ms=5)
    assert rep.tasks_tuned == rep.tasks_total
    vm = relax.VirtualMachine(build(low.mod, cfg.tvm_target(), open_database(cfg.log_dir(tmp_path)).db),
                              tvm.cpu())
    x = np.random.default_rng(8).standard_normal((1, 3, 32, 32)).astype("float32")
    assert np.abs(vm["main"](tvm.runtime.tensor(x)).numpy() - _torch_out(net, x)).max() <= 1e-4


@pytest.mark.slow
def test_retime_times_every_workload_once_and_the_dataset_uses_it(tuned):
    from tvm_ofa.compiler.retime import retime_records
    from tvm_ofa.compiler.store import read_retimed
    from tvm_ofa.predict.dataset import build_dataset

    cfg, low, root, rep, events = tuned
    log_dir = cfg.log_dir(root)
    before = build_dataset(log_dir)
    seen = []
    # slow=100: a CI machine's phases must not leave workloads unaccepted here
    r = retime_records(cfg, log_dir, batch=2, slow=100.0, progress=seen.append)
    assert r.workloads == len(before) >= 4 and r.retimed == r.workloads and r.unaccepted == 0
    assert seen[-1].done == seen[-1].total == r.workloads
    doc = read_retimed(log_dir)
    assert set(doc["workloads"]) == {w.key for w in before.workloads}
    assert all(e["s"] > 0 and e["canary_s"] > 0 for e in doc["workloads"].values())
    after = build_dataset(log_dir)
    assert after.retimed == r.workloads
    assert dict(zip([w.key for w in after.workloads], after.latency_s)) == pytest.approx(
        {k: e["s"] for k, e in doc["workloads"].items()})
    # resumable: a second run has nothing left to time
    again = retime_records(cfg, log_dir, batch=2, slow=100.0)
    assert again.already == r.workloads and again.retimed == 0

    # another machine's records, timed here: only the keys asked for, in their order, into the
    # borrowed file of the other folder; a deadline already past times nothing
    from tvm_ofa.compiler.store import BORROWED_FILE, RETIMED_FILE, accepted_times

    other = root / "other-cpu"
    other.mkdir()
    keys = [w.key for w in before.workloads][:2]
    assert retime_records(cfg, other, records_dir=log_dir, keys=keys, deadline=0.0, clock=lambda: 1.0).retimed == 0
    b = retime_records(cfg, other, records_dir=log_dir, keys=keys, batch=1, slow=100.0)
    assert b.workloads == 2 and b.retimed == 2 and not (other / RETIMED_FILE).exists()
    assert set(accepted_times(other, None, BORROWED_FILE)) == set(keys)
    assert read_retimed(other, BORROWED_FILE)["records_dir"].endswith(log_dir.name)


@pytest.mark.slow
def test_resume_after_torn_write(tuned):
    """A killed tuner: no completion marks, the last batch's records missing, a torn line."""
    from tvm_ofa.compiler.store import FINISHED_FILE, RECORD_FILE, DatabaseWarning
    from tvm_ofa.compiler.tune import tune

    cfg, low, root, first, _ = tuned
    log_dir = cfg.log_dir(root)
    killed = root.parent / "killed"
    shutil.copytree(root, killed)
    kdir = cfg.log_dir(killed)
    (kdir / FINISHED_FILE).unlink()
    lines = (kdir / RECORD_FILE).read_text().splitlines()
    (kdir / RECORD_FILE).write_text("\n".join(lines[:-2]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    with pytest.warns(DatabaseWarning, match="skipped 1 unreadable"):
        rep = tune(cfg, low, log_root=killed, min_repeat_ms=5)
    assert rep.skipped_lines == 1
    assert 0 < rep.tasks_tuned < rep.tasks_total  # only what the "kill" lost is tuned again
    assert 0 < rep.new_trials < first.new_trials
    rep2 = tune(cfg, low, log_root=killed)
    assert rep2.new_trials == 0
    assert len((log_dir / RECORD_FILE).read_text().splitlines()) == len(lines)


@pytest.mark.slow
def test_tune_killed_with_sigkill_resumes_losing_at_most_the_batch_in_flight(tuned, tmp_path):
    """A tune in a process of its own, killed with SIGKILL once a few batches are committed: the
    rerun keeps every committed record and tunes only what was left."""
    from conftest import kill_when

    from tvm_ofa.compiler.store import RECORD_FILE
    from tvm_ofa.compiler.tune import tune

    cfg, low, _, first, _ = tuned
    script = tmp_path / "tune_mini.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_compiler import MiniMBV3, host_cfg, mini_module
        from tvm_ofa.compiler.lower import lower_module
        from tvm_ofa.compiler.tune import tune
        tune(host_cfg(), lower_module(mini_module(), (1, 3, 32, 32)), log_root=sys.argv[1], min_repeat_ms=5)
    """))
    root = tmp_path / "logs"
    records = cfg.log_dir(root) / RECORD_FILE

    def committed() -> int:
        return len(records.read_text().splitlines()) if records.exists() else 0

    kill_when([sys.executable, str(script), str(root)], lambda: committed() >= 3)
    before = records.read_text().splitlines()
    rep = tune(cfg, low, log_root=root, min_repeat_ms=5)
    after = records.read_text().splitlines()
    assert after[:len(before) - 1] == before[:-1]  # all kept (the last line may have been torn)
    assert 0 < rep.new_trials < first.new_trials
    assert tune(cfg, low, log_root=root).new_trials == 0


@pytest.mark.slow
def test_a_record_that_cannot_be_read_back_is_set_aside(tuned):
    """MetaSchedule can commit a record its own loader then refuses (seen on reduction tasks),
    which makes the whole database unopenable: that record moves aside, the rest opens."""
    import re

    from tvm_ofa.compiler.store import RECORD_FILE, REJECTED_FILE, DatabaseWarning, open_database

    cfg, _, root, _, _ = tuned
    broken = root.parent / "unloadable"
    shutil.copytree(root, broken)
    kdir = cfg.log_dir(broken)
    lines = (kdir / RECORD_FILE).read_text().splitlines()
    i = next(j for j, line in enumerate(lines) if '["GetSBlock",[],["' in line)
    # valid JSON, but its trace names a block the workload does not have
    lines[i] = re.sub(r'\["GetSBlock",\[\],\["[^"]+"', '["GetSBlock",[],["no_such_block"', lines[i], count=1)
    (kdir / RECORD_FILE).write_text("\n".join(lines) + "\n")
    with pytest.warns(DatabaseWarning, match="1 tuning record.*cannot read back"):
        db = open_database(kdir)
    assert len(db.db.get_all_tuning_records()) == len(lines) - 1
    assert (kdir / REJECTED_FILE).read_text() == lines[i] + "\n"


@pytest.mark.slow
def test_emit_load_fresh_process_and_rpc(tuned, mini, tmp_path, capsys):
    from tvm_ofa import load_artifact
    from tvm_ofa.arch import ArchConfig
    from tvm_ofa.compiler.artifact import read_metadata
    from tvm_ofa.compiler.pipeline import emit
    from tvm_ofa.compiler.rpc import LoopbackRPC, measure_rpc

    cfg, low, root, _, _ = tuned
    arch = ArchConfig(ks=[3] * 20, e=[3] * 20, d=[2] * 5, resolution=32)  # a label for the folder
    out = emit(cfg, arch, mini, log_root=root, out_root=tmp_path, warmup=2, repeats=5)
    assert out == tmp_path / "host-test" / arch.id
    meta = read_metadata(out)
    assert meta["tuning"]["coverage"] == 1.0
    assert meta["tuning"]["tuned_workloads"] == meta["tuning"]["total_workloads"] > 0
    lat = meta["latency"]
    assert lat["median_ms"] > 0 and lat["threads"] == 2
    # timed as the predictor's truth is: two or three fresh loads, at least two windows each
    assert len(lat["loads_ms"]) in (2, 3) and len(lat["passes_ms"]) >= 2 * len(lat["loads_ms"])
    assert lat["latency_ms"] == min(lat["passes_ms"]) == min(lat["loads_ms"])
    for key in ("format", "version", "target", "arch", "arch_id", "input_shape", "input_dtype",
                "output_shape", "entry", "tvm_version", "cpu", "weights_sha256",
                "predicted_latency_ms", "accuracy"):
        assert key in meta
    assert meta["weights_sha256"] == low.weights_sha256 and meta["cpu"]["name"]
    assert meta["tir_pipeline"] == "tvm_ofa"

    x = np.random.default_rng(2).standard_normal((1, 3, 32, 32)).astype("float32")
    want = _torch_out(mini, x)
    art = load_artifact(out)
    assert np.abs(art(x) - want).max() <= 1e-4
    # calls share one input buffer: each sees its own input, and earlier outputs stay as they were
    x2 = np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype("float32")
    first, second = art(x), art(x2)
    assert np.abs(second - _torch_out(mini, x2)).max() <= 1e-4
    assert np.abs(first - want).max() <= 1e-4 and np.abs(art(x) - want).max() <= 1e-4
    lat = art.benchmark(warmup=2, repeats=5)
    assert 0 < lat.median_ms <= lat.p90_ms
    # repeats is a floor: a sub-millisecond net gets more calls, up to 20x, to span min_seconds
    assert art.benchmark(warmup=2, repeats=5, min_seconds=0).repeats == 5
    assert art.benchmark(warmup=2, repeats=5, min_seconds=1e3).repeats == 100

    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "want.npy", want)
    code = textwrap.dedent(f"""
        import numpy as np, tvm
        from tvm import relax
        lib = tvm.runtime.load_module({str(out / 'model.so')!r})
        vm = relax.VirtualMachine(lib, tvm.cpu())
        got = vm["main"](tvm.runtime.tensor(np.load({str(tmp_path / 'x.npy')!r}))).numpy()
        assert np.abs(got - np.load({str(tmp_path / 'want.npy')!r})).max() <= 1e-4
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

    # loaded with no thread count, it runs on every physical core, whatever its metadata says it
    # was measured with (TVM's own default, half the logical CPUs, is one thread on 2 cores)
    meta["latency"]["threads"] = 1
    (out / "metadata.json").write_text(json.dumps(meta))
    code = textwrap.dedent(f"""
        from tvm_ofa import load_artifact
        from tvm_ofa.compiler.measure import physical_cores, runtime_threads
        art = load_artifact({str(out)!r})
        assert art.threads == physical_cores() == runtime_threads(), (art.threads, runtime_threads())
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("TVM_NUM_THREADS", "OMP_NUM_THREADS")}
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, env=env)
    assert meta["lowering"] == {"prepack": False, "nchwc": 0}

    with LoopbackRPC(key="tvm-ofa-test") as rpc:
        lat = measure_rpc(str(out), {"tracker_host": "127.0.0.1", "tracker_port": rpc.port,
                                     "key": "tvm-ofa-test"}, warmup=2, repeats=5)
    assert 0 < lat.median_ms <= lat.p90_ms and 5 <= lat.repeats <= 100  # spread over >= 1 s, at most 20x

    # bench/kernel_profile.py times the same kernels inside full runs of this library
    capsys.readouterr()
    assert bench_script("kernel_profile").main([str(out), "--runs", "3", "--top", "2"]) == 0
    printed = capsys.readouterr().out

    def listed(printed: str) -> list[str]:
        # the rows under "slowest N kernels": fused kernels, or TIR-only ones such as "mean"
        return [ln for ln in printed.split("\nslowest 2 kernels")[1].splitlines() if ln.startswith("  ")]

    kernels = listed(printed)
    assert "end to end, no hook: median" in printed and len(kernels) == 2
    assert int(printed.split("kernels inside a run: ")[1].split(" calls")[0]) > 0
    # --again: every kernel also timed when called again at once, beside its time in the run
    assert bench_script("kernel_profile").main([str(out), "--runs", "3", "--top", "2", "--again"]) == 0
    printed = capsys.readouterr().out
    rows = [ln.split() for ln in listed(printed)]
    assert "the same kernels called again at once: sum" in printed and len(rows) == 2
    for in_run, again, ratio, *_ in rows:
        assert float(in_run) > 0 and float(again) > 0 and ratio.endswith("x")
    # --producer: a third time per kernel, right after the kernel before it runs again
    assert bench_script("kernel_profile").main([str(out), "--runs", "3", "--top", "2", "--again",
                                                "--producer"]) == 0
    printed = capsys.readouterr().out
    rows = [ln.split() for ln in listed(printed)]
    assert "right after the kernel before them: sum" in printed and len(rows) == 2
    for in_run, again, ratio, after, calls, *_ in rows:
        assert float(after) > 0 and calls.startswith("x")
    with pytest.raises(SystemExit):
        bench_script("kernel_profile").main([str(out), "--producer"])
    assert "error: --producer goes with --again" in capsys.readouterr().err


@pytest.mark.slow
def test_aarch64_export_untuned(tiny_sub, tmp_path):
    if shutil.which("aarch64-linux-gnu-gcc") is None:
        pytest.skip("aarch64-linux-gnu-gcc absent (Debian: apt-get install gcc-aarch64-linux-gnu)")
    from tvm_ofa.compiler.artifact import read_metadata
    from tvm_ofa.compiler.pipeline import compile_arch

    arch, _ = tiny_sub

    cfg = parse_target({"name": "arm", "target": {"kind": "llvm", "mtriple": "aarch64-linux-gnu",
                                                  "mcpu": "cortex-a72", "num-cores": 4},
                        "cc": "aarch64-linux-gnu-gcc",
                        # a port nothing listens on: the target is unreachable, as on CI
                        "runner": {"kind": "rpc", "tracker_host": "127.0.0.1", "tracker_port": 9,
                                   "key": "none"}}, "arm.yaml")

    class Net:  # compile_arch only needs .extract
        def __init__(self, sub):
            self.sub = sub

        def extract(self, _arch):
            return self.sub

    out = compile_arch(cfg, arch, Net(tiny_sub[1]), log_root=tmp_path / "logs", out_root=tmp_path)
    data = (out / "model.so").read_bytes()
    assert data[:4] == b"\x7fELF" and int.from_bytes(data[18:20], "little") == 183  # EM_AARCH64
    meta = read_metadata(out)
    assert meta["latency"] is None and "no RPC tracker reachable" in meta["latency_note"]
    assert meta["tuning"]["tuned_workloads"] == 0 and "not tuned" in meta["tuning"]["note"]


def test_cuda_build_without_nvcc_is_one_line(monkeypatch):
    from tvm_ofa.compiler.build import BuildError, _cuda_compiler

    monkeypatch.setenv("TVM_CUDA_COMPILE_MODE", "nvcc")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(BuildError, match="^building for cuda needs the CUDA toolkit's nvcc on PATH"):
        _cuda_compiler()


@pytest.mark.slow
def test_cuda_target_builds_untuned_here(tiny_sub, tmp_path):
    """cuda-sm90 without records: every kernel gets dlight's default GPU schedule (TVM's own CUDA
    pipeline failed on the supernet's 1x1 convolutions: its GEMV rule asserts), the kernels are
    compiled into the library, and the artifact says it is untuned. Needs nvcc, not a GPU."""
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc absent: TVM compiles CUDA kernels with it")
    from tvm_ofa.compiler.artifact import read_metadata
    from tvm_ofa.compiler.build import default_gpu_schedules
    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.pipeline import emit
    from tvm_ofa.targets import load_target

    arch, sub = tiny_sub
    cfg = load_target("cuda-sm90")
    low = lower_module(sub, (1, 3, 32, 32))
    mod = default_gpu_schedules(low.mod, cfg.tvm_target())
    funcs = [f for _, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    assert funcs and all(int(f.attrs["tirx.is_scheduled"]) for f in funcs)

    out = emit(cfg, arch, sub, log_root=tmp_path / "logs", out_root=tmp_path, tune_first=False,
               measure=False)
    data = (out / "model.so").read_bytes()
    meta = read_metadata(out)
    if meta["device_code"] == "compiled":
        # kernels compiled for sm_90 (through a stub driver where there is none), no source: a
        # C++ program loads this without TVM's Python or nvcc (checked on an H200)
        assert b"sm_90" in data and b".nv.info" in data and b"__global__" not in data
    else:  # no CUDA runtime library here at all: TVM keeps the source for the loader
        assert meta["device_code"] == "source" and b"__global__" in data
    assert meta["tuning"]["tuned_workloads"] == 0 and "untuned" in meta["tuning"]["note"]
    assert meta["latency"] is None and meta["target"]["resolved"]["kind"] == "cuda"


@pytest.mark.slow
def test_tune_through_rpc_runner(mini, tmp_path):
    """Candidates measured by an RPC server registered at a loopback tracker."""
    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.rpc import LoopbackRPC
    from tvm_ofa.compiler.tune import tune

    low = lower_module(mini, (1, 3, 32, 32))
    with LoopbackRPC(key="tvm-ofa-tune") as rpc:
        cfg = host_cfg(runner={"kind": "rpc", "tracker_host": "127.0.0.1",
                               "tracker_port": rpc.port, "key": "tvm-ofa-tune"},
                       tuning={"trials_per_task": 1, "trials_per_round": 1})
        rep = tune(cfg, low, log_root=tmp_path, min_repeat_ms=5)
    assert rep.new_trials >= rep.tasks_total and rep.estimated_ms > 0


def test_unreachable_rpc_target_is_a_one_line_error(mini, tmp_path):
    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.tune import TuningError, tune

    cfg = host_cfg(runner={"kind": "rpc", "tracker_host": "127.0.0.1", "tracker_port": 9,
                           "key": "none"})
    with pytest.raises(TuningError, match=r"^host-test.yaml: runner: cannot measure .*no RPC tracker"):
        tune(cfg, lower_module(mini, (1, 3, 32, 32)), log_root=tmp_path)


def test_load_artifact_errors(tmp_path):
    from tvm_ofa import load_artifact
    from tvm_ofa.compiler.artifact import ArtifactError

    with pytest.raises(ArtifactError, match="no such artifact"):
        load_artifact(tmp_path / "missing")
    with pytest.raises(SystemExit, match=r"^error: \S*missing: no such artifact folder$"):
        bench_script("kernel_profile").main([str(tmp_path / "missing")])
    (tmp_path / "metadata.json").write_text('{"format": "other"}')
    with pytest.raises(ArtifactError, match="format: expected 'tvm-ofa-artifact'"):
        load_artifact(tmp_path)


def test_metadata_is_amended_only_with_keys_of_the_contract(tmp_path):
    from tvm_ofa.compiler.artifact import ArtifactError, read_metadata, update_metadata, write_metadata

    write_metadata(tmp_path, {"arch_id": "r32-x", "accuracy": None})
    meta = update_metadata(tmp_path, accuracy={"predicted": 0.9, "measured": None}, predicted_latency_ms=1.5)
    assert read_metadata(tmp_path) == meta and meta["version"] == 1 and meta["accuracy"]["predicted"] == 0.9
    with pytest.raises(ArtifactError, match="unknown metadata key 'acuracy'"):
        update_metadata(tmp_path, acuracy=1.0)
    assert read_metadata(tmp_path) == meta  # a refused change writes nothing


def test_pack_keeps_best_records_and_unpack_restores(tmp_path):
    from tvm_ofa.compiler.store import RECORD_FILE, WORKLOAD_FILE, has_logs, pack, unpack

    wl = ['["111", {"m": 1}]', '["222", {"m": 2}]', '["333", {"m": 3}]']
    rec = [[2, [["t"], [3e-3]]], [2, [["t"], [1e-3]]], [2, [["t"], [2e-3]]], [2, [["t"], [1e10]]],
           [0, [["t"], [1e10]]], [1, [["t"], [5e-3]]]]
    (tmp_path / WORKLOAD_FILE).write_text("\n".join(wl) + "\n")
    (tmp_path / RECORD_FILE).write_text("\n".join(json.dumps(r) for r in rec) + "\n")
    assert pack(tmp_path, keep=2) == (6, 3)
    wl_after = (tmp_path / WORKLOAD_FILE).read_text().splitlines()
    assert [json.loads(x)[0] for x in wl_after] == ["222", "333"]  # "111" had no valid record
    recs = [json.loads(x) for x in (tmp_path / RECORD_FILE).read_text().splitlines()]
    assert sorted((r[0], r[1][1][0]) for r in recs) == [(0, 5e-3), (1, 1e-3), (1, 2e-3)]
    plain = {n: (tmp_path / n).read_bytes() for n in (WORKLOAD_FILE, RECORD_FILE)}
    for n in plain:
        (tmp_path / n).unlink()
    assert has_logs(tmp_path)  # unpacked on first use
    assert {n: (tmp_path / n).read_bytes() for n in plain} == plain
    assert not unpack(tmp_path)  # the working copies win once they exist


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="reads /proc/stat")
def test_local_runner_finishes_its_timings_before_the_search_goes_on():
    """MetaSchedule's schedulers collect timings lazily, so the local runner waits for them
    itself (:func:`synchronous`): when ``run`` returns, every timing has been taken, in order."""
    from tvm.s_tir.meta_schedule.runner import RunnerInput, RunnerResult

    from tvm_ofa.compiler.runners import synchronous

    taken = []

    class Pending:
        def __init__(self, i):
            self.i = i

        def result(self):
            taken.append(self.i)
            return RunnerResult(run_secs=[tvm.tirx.FloatImm("float64", 1e-3 * (self.i + 1))], error_msg=None)

    class Lazy:
        pool = "the wrapped runner's pool"

        def run(self, inputs):
            return [Pending(i) for i in range(len(inputs))]

    runner = synchronous(Lazy())
    futures = runner.run([RunnerInput(f"a{i}.so", "cpu", []) for i in range(3)])
    assert taken == [0, 1, 2] and all(f.done() for f in futures)
    assert [float(f.result().run_secs[0]) for f in futures] == [1e-3, 2e-3, 3e-3]
    assert runner.pool == "the wrapped runner's pool"


def test_a_tune_commits_each_batch_before_the_next_is_timed(mini, tmp_path):
    """Records reach the database (and the progress callback) batch by batch: when the tune
    reports progress, the runner has timed at most one batch more than is committed, so a tune
    stopped at any point keeps all but its last batch. (MetaSchedule's gradient scheduler
    committed nothing until every task had had a batch.)"""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.runner import PyRunner

    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.runners import make_runner
    from tvm_ofa.compiler.tune import tune

    cfg = host_cfg(name="host-test-batches", tuning={"trials_per_task": 4, "trials_per_round": 2})
    low = lower_module(mini, (1, 3, 32, 32))
    inner = make_runner(cfg, min_repeat_ms=5)
    timed, reports = [], []

    @derived_object
    class Counting(PyRunner):
        def run(self, inputs):
            timed.append(len(inputs))
            return inner.run(inputs)

    rep = tune(cfg, low, log_root=tmp_path, runner=Counting(), strategy="replay-trace",
               progress=lambda p: reports.append((p.trials, sum(timed))))
    assert rep.tasks_tuned == rep.tasks_total >= 5 and len(timed) >= 2 * rep.tasks_total
    ahead = [measured - committed for committed, measured in reports]
    assert reports[-1][0] == sum(timed) and max(ahead) <= 2, reports


def test_set_threads_sizes_tvms_pool_and_runner_workers_use_the_targets_threads():
    """TVM sizes its pool once, from TVM_NUM_THREADS or else half the CPUs on x86: artifacts
    loaded without the variable ran on one thread of this 2-core machine."""
    env = {k: v for k, v in os.environ.items() if k not in ("TVM_NUM_THREADS", "OMP_NUM_THREADS")}
    code = textwrap.dedent("""
        import os, warnings
        from tvm_ofa.compiler.measure import runtime_threads, set_threads
        n = os.cpu_count()
        set_threads(1)  # a first call for fewer threads leaves room for every CPU later
        assert runtime_threads() == 1, runtime_threads()
        set_threads(n)
        assert runtime_threads() == n, runtime_threads()
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            set_threads(n + 2)  # the pool has n workers: it cannot grow, and says so
        assert runtime_threads() == n and f"cannot grow to {n + 2}" in str(seen[0].message)
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, env=env)

    from tvm_ofa.compiler.measure import runtime_threads
    from tvm_ofa.compiler.runners import make_runner

    runner = make_runner(host_cfg(threads=3))
    try:
        assert runner.pool.submit(runtime_threads).result(timeout=60) == 3
    finally:
        runner.pool.shutdown()


def test_other_load_sees_another_process_but_not_this_one():
    import time

    from tvm_ofa.compiler.measure import other_load

    ncpu = os.cpu_count() or 1
    spin = "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass"
    child = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(0.2)  # the child's interpreter start is not part of the window
        with other_load() as busy:
            time.sleep(1.0)
    finally:
        child.wait()
    # one busy process fills one CPU of ncpu
    assert busy["other_cpu"] >= 0.6 / ncpu
    with other_load() as own:
        t = time.time()
        while time.time() - t < 1.0:
            pass
    assert 0.0 <= own["other_cpu"] <= 1.0


def test_a_timing_disturbed_by_other_processes_is_taken_again(monkeypatch):
    import contextlib
    import time

    import tvm_ofa.compiler.measure as measure

    class FakeVM:
        """Each timed run returns the next of ``runs`` (ms per call)."""

        def __init__(self, runs):
            self.runs = iter(runs)

        def set_input(self, *a):
            pass

        def invoke_stateful(self, *a):
            pass

        def time_evaluator(self, name, dev, number, repeat):
            ms = next(self.runs)
            return lambda fn: type("R", (), {"results": [ms / 1e3] * repeat})()

    def fake_load(shares):
        it = iter(shares)

        @contextlib.contextmanager
        def other_load():
            out = {"other_cpu": None}
            yield out
            out["other_cpu"] = next(it)
        return other_load

    monkeypatch.setattr(time, "sleep", lambda s: None)
    x = np.zeros((1, 3), "float32")
    # busy, busy, quiet: the third timing is kept
    monkeypatch.setattr(measure, "other_load", fake_load([0.5, 0.3, 0.01]))
    lat = measure.benchmark_vm(FakeVM([9.0, 5.0, 1.0]), tvm.cpu(), x, warmup=0, repeats=5)
    assert lat.median_ms == pytest.approx(1.0) and lat.other_cpu == 0.01
    # busy every time: the least disturbed timing, with its share as evidence
    monkeypatch.setattr(measure, "other_load", fake_load([0.5, 0.3, 0.4]))
    lat = measure.benchmark_vm(FakeVM([9.0, 5.0, 7.0]), tvm.cpu(), x, warmup=0, repeats=5)
    assert lat.median_ms == pytest.approx(5.0) and lat.other_cpu == 0.3
    # a quiet machine: one timing
    monkeypatch.setattr(measure, "other_load", fake_load([0.0]))
    assert measure.benchmark_vm(FakeVM([2.0]), tvm.cpu(), x, warmup=0, repeats=5).median_ms == pytest.approx(2.0)
    # several windows: the median of their medians, each kept; the busy one was taken again
    monkeypatch.setattr(measure, "other_load", fake_load([0.0, 0.5, 0.0, 0.0]))
    lat = measure.benchmark_vm(FakeVM([2.0, 9.0, 2.2, 2.1]), tvm.cpu(), x, warmup=0, repeats=5, passes=3)
    assert lat.passes_ms == pytest.approx((2.0, 2.2, 2.1)) and lat.median_ms == pytest.approx(2.1)
    assert lat.repeats == 15 and lat.other_cpu == 0.0
    # max_passes: windows are added until a second one comes within 5 % of the fastest
    monkeypatch.setattr(measure, "other_load", fake_load([0.0] * 6))
    lat = measure.benchmark_vm(FakeVM([3.0, 2.0, 2.9, 2.05, 9.0]), tvm.cpu(), x, warmup=0, repeats=5,
                               passes=2, max_passes=6)
    assert lat.passes_ms == pytest.approx((3.0, 2.0, 2.9, 2.05)) and measure.confirmed(lat.passes_ms)
    # ... and no further than max_passes when none does
    monkeypatch.setattr(measure, "other_load", fake_load([0.0] * 6))
    lat = measure.benchmark_vm(FakeVM([3.0, 2.0, 2.9, 2.5, 9.0]), tvm.cpu(), x, warmup=0, repeats=5,
                               passes=2, max_passes=3)
    assert len(lat.passes_ms) == 3 and not measure.confirmed(lat.passes_ms)


def test_canary_waits_for_the_machine_to_run_at_its_usual_speed(monkeypatch):
    import time

    from tvm_ofa.compiler.measure import Canary

    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    times = iter([1.0, 1.6, 1.5, 1.05, 2.0])
    c = Canary(lambda: next(times))
    assert c() == 1.0 and c.best == 1.0
    # slow (1.6, 1.5), then back within 10 %: two waits
    assert c.wait_for_speed(slow=1.1) == pytest.approx(1.05) and len(slept) == 2
    # gives up after max_wait_s and says how slow it still was
    assert c.wait_for_speed(slow=1.1, max_wait_s=0.0) == pytest.approx(2.0)


def test_library_accuracy_of_an_artifact_equals_pytorchs(tiny_sub, tmp_path):
    """The demo's accuracy figure comes from the compiled library itself, one image per call;
    it classifies exactly as the PyTorch subnet it was built from."""
    from tvm_ofa import load_artifact
    from tvm_ofa.compiler.pipeline import emit
    from tvm_ofa.data import ImageDataset
    from tvm_ofa.train.evaluate import accuracy, library_accuracy

    arch, sub = tiny_sub
    out = emit(host_cfg(), arch, sub, log_root=tmp_path / "logs", out_root=tmp_path, tune_first=False,
               measure=False)
    rng = np.random.default_rng(3)
    data = ImageDataset(rng.integers(0, 255, (45, 3, 28, 28), dtype=np.uint8), rng.integers(0, 10, 45),
                        tuple("abcdefghij"), "synthetic")
    got = library_accuracy(load_artifact(out), data, arch.resolution, batch_size=16)
    assert got == pytest.approx(accuracy(sub, data, arch.resolution, batch_size=16))


def test_combine_loads_keeps_every_window_and_the_fastest_per_load():
    from tvm_ofa.compiler.measure import Latency, combine_loads, load_wanted

    a = Latency(2.1, 2.5, 50, 10, 2, passes_ms=(2.2, 2.1))
    b = Latency(3.0, 3.4, 50, 10, 2, passes_ms=(3.1, 2.9, 3.0))
    got = combine_loads([a, b])
    assert got.passes_ms == (2.2, 2.1, 3.1, 2.9, 3.0) and got.loads_ms == (2.1, 2.9)
    assert got.latency_ms == 2.1 and got.median_ms == pytest.approx(2.9) and got.repeats == 100
    # the two loads disagree by more than 5 %: a third is wanted; after it, no more
    assert load_wanted(got.loads_ms, 2) and not load_wanted((2.1, 2.9, 2.12), 2)
    assert not load_wanted((2.1, 2.15), 2)
