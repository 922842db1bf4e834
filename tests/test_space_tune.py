"""``tvm-ofa tune --space``: the whole space's workloads, heaviest first, resumable."""
from __future__ import annotations

import numpy as np
import pytest

from test_compiler import host_cfg


def test_a_round_takes_the_subnet_holding_the_heaviest_workload_and_the_most_of_the_next():
    from tvm_ofa.arch import ArchConfig
    from tvm_ofa.predict.space_tune import pick_round

    a = ArchConfig([3] * 4, [3] * 4, [2, 2], resolution=32)
    b = ArchConfig([5] * 4, [3] * 4, [2, 2], resolution=32)
    c = ArchConfig([7] * 4, [3] * 4, [2, 2], resolution=32)
    held = {a.id: {"w1", "w4"}, b.id: {"w1", "w2", "w3", "w9"}, c.id: {"w2", "w3", "w4"}}
    arch, chosen = pick_round(["w1", "w2", "w3", "w4", "w9"], [a, b, c], lambda x: held[x.id], 2)
    # c holds more of the next ones but not the heaviest; b holds both of the first two
    assert arch == b and chosen == ["w1", "w2"]
    # a round fills up with lighter workloads its subnet holds, in rank order
    arch, chosen = pick_round(["w1", "w4", "w5", "w6", "w9"], [a, b, c], lambda x: held[x.id], 3)
    assert arch == a and chosen == ["w1", "w4"]
    arch, chosen = pick_round(["w2", "w4", "w5", "w6", "w9"], [a, b, c], lambda x: held[x.id], 2)
    assert arch == c and chosen == ["w2", "w4"]
    arch, chosen = pick_round(["w3", "w5", "w6", "w7", "w9"], [a, b, c], lambda x: held[x.id], 4)
    assert arch == b and chosen == ["w3", "w9"]


def test_workloads_are_ranked_by_the_latency_they_carry(tiny_space):
    from tvm_ofa.predict.latency import MacsPredictor
    from tvm_ofa.predict.latency import rank_workloads
    from tvm_ofa.predict.workloads import NetConfig, subnet_workloads

    net = NetConfig(0.35, 10, 2)
    pred = MacsPredictor(tiny_space, net)
    pred.s_per_mac = 1e-9
    archs = tiny_space.sample_many(16, np.random.default_rng(0))
    keys, ms = rank_workloads(pred, archs)
    assert list(ms) == sorted(ms, reverse=True) and len(keys) == len(set(keys))
    # by hand: occurrences times predicted time
    want: dict[str, float] = {}
    for a in archs:
        for w in subnet_workloads(a, net):
            want[w.key] = want.get(w.key, 0.0) + float(pred.workload_ms([w])[0])
    assert set(keys) == set(want)
    assert np.allclose(ms, [want[k] for k in keys])


@pytest.mark.slow
def test_space_tune_tunes_the_heaviest_workloads_first_and_a_rerun_goes_on(tiny_supernet, tmp_path):
    from tvm_ofa.predict.dataset import tuned_trials
    from tvm_ofa.predict.latency import rank_workloads
    from tvm_ofa.predict.space_tune import ranking_predictor, tune_space
    from tvm_ofa.predict.workloads import NetConfig

    cfg = host_cfg()
    events = []
    # a budget smaller than a round: exactly one round runs
    rep = tune_space(cfg, tiny_supernet, hours=1e-6, workloads_per_round=2, log_root=tmp_path, n_archs=32,
                     progress=events.append)
    assert rep.rounds == 1 and rep.workloads_tuned == 2 and rep.new_trials > 0
    assert rep.ranking.startswith("MACs") and rep.covered_before == 0 < rep.covered_after < 1
    assert [e.kind for e in events] == ["start", "round", "tuned"]
    pred, _ = ranking_predictor(cfg, NetConfig(0.35, 10, 2), tiny_supernet.space, tmp_path)
    ranked, _ = rank_workloads(pred, tiny_supernet.space.sample_many(32, np.random.default_rng(0)))
    done = tuned_trials(cfg.log_dir(tmp_path))
    assert done[ranked[0]] >= 2  # the heaviest first
    assert sum(1 for k in ranked if done.get(k, 0) >= 2) == 2
    again = tune_space(cfg, tiny_supernet, hours=1e-6, workloads_per_round=2, log_root=tmp_path, n_archs=32)
    assert again.covered_before == pytest.approx(rep.covered_after)
    assert again.covered_after > again.covered_before and again.pending == rep.pending - 2


def test_space_tune_refuses_subnet_flags_and_bad_budgets(tmp_path, capsys):
    from tvm_ofa.cli import main

    assert main(["tune", "--space", "--resolution", "40", "--log-root", str(tmp_path)]) == 1
    assert "--resolution goes with --arch, not --space" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["tune", "--space", "--arch", "smallest"])
    assert exc.value.code == 2
    assert main(["tune", "--space", "--hours", "0", "--log-root", str(tmp_path)]) == 1
    assert "hours must be positive" in capsys.readouterr().err


def test_a_stop_request_ends_the_run_between_rounds(tiny_supernet, tmp_path):
    from tvm_ofa.predict.space_tune import tune_space

    rep = tune_space(host_cfg(), tiny_supernet, hours=1, log_root=tmp_path, n_archs=8, stop=lambda: True)
    assert rep.rounds == rep.new_trials == 0 and rep.pending == rep.workloads_total > 0
