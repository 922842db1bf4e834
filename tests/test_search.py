"""Search on a tiny space with synthetic predictors: budgets hold, runs repeat under a seed, the
Pareto front is non-dominated, impossible budgets fail with the floor named."""
from __future__ import annotations

import numpy as np
import pytest

from tvm_ofa.arch import ArchConfig, SearchSpace
from tvm_ofa.search import population as pop
from tvm_ofa.search import (InfeasibleBudgetError, best_under, evolution_search, non_dominated_sort,
                            nsga2_search, pareto_indices)

SPACE = SearchSpace(resolutions=(32, 40, 48), n_stages=3)
GEN = 30


def synth_latency(genes):
    """Monotone in every gene: ms = 0.5 + (r/48)^2 * sum over active slots of k^2 e / 100."""
    ks, e, d, r = genes
    act = SPACE.active_mask(d)
    return 0.5 + (r / 48.0) ** 2 * ((ks * ks * e) * act).sum(1) / 100.0


def synth_accuracy(genes):
    ks, e, d, r = genes
    act = SPACE.active_mask(d)
    return np.log1p((ks * e * act).sum(1)) + r / 48.0 + 0.01 * (ks[:, 0] == 5)


def floor_ms():
    return float(synth_latency(pop.smallest(SPACE))[0])


def reference_encode(space, archs):
    """once-for-all's one-hot encoding, one arch at a time (the pre-vectorized loop)."""
    nk, ne = len(space.ks_choices), len(space.e_choices)
    out = np.zeros((len(archs), space.encoding_size), np.float32)
    for row, a in enumerate(archs):
        for i in a.active_blocks():
            out[row, i * nk + space.ks_choices.index(a.ks[i])] = 1
            out[row, space.n_blocks * nk + i * ne + space.e_choices.index(a.e[i])] = 1
        out[row, space.n_blocks * (nk + ne) + space.resolutions.index(a.resolution)] = 1
    return out


# -- population ------------------------------------------------------------------------------
def test_sample_round_trips_and_is_canonical():
    rng = np.random.default_rng(0)
    genes = pop.sample(SPACE, 200, rng)
    assert all(g.dtype == np.int32 for g in genes)
    archs = pop.to_archs(genes)
    assert all(SPACE.contains(a) and a == a.canonical() for a in archs)
    back = pop.from_archs(archs)
    assert all(np.array_equal(x, y) for x, y in zip(genes, back))


def test_canonicalize_matches_archconfig():
    rng = np.random.default_rng(1)
    raw = (rng.choice(SPACE.ks_choices, (100, SPACE.n_blocks)), rng.choice(SPACE.e_choices, (100, SPACE.n_blocks)),
           rng.choice(SPACE.d_choices, (100, SPACE.n_stages)), rng.choice(SPACE.resolutions, 100))
    canon = pop.to_archs(pop.canonicalize(SPACE, raw))
    assert canon == [a.canonical() for a in pop.to_archs(raw)]


def test_encode_equals_encode_batch():
    rng = np.random.default_rng(2)
    for space in (SPACE, SearchSpace()):
        genes = pop.sample(space, 64, rng)
        archs = pop.to_archs(genes)
        vec = pop.encode(space, genes)
        assert vec.shape == (64, space.encoding_size)
        np.testing.assert_array_equal(vec, space.encode_batch(archs))
        np.testing.assert_array_equal(vec, reference_encode(space, archs))


def test_mutation_and_crossover_stay_in_space():
    rng = np.random.default_rng(3)
    a, b = pop.sample(SPACE, 300, rng), pop.sample(SPACE, 300, rng)
    for kids in (pop.mutate(SPACE, a, 0.5, rng), pop.crossover(SPACE, a, b, rng),
                 pop.mutate(SPACE, a, 1.0, rng)):
        assert pop.contains(SPACE, kids).all()
        assert all(SPACE.contains(x) for x in pop.to_archs(kids))
        assert pop.to_archs(kids) == [x.canonical() for x in pop.to_archs(kids)]
    # each crossover gene comes from one of the two parents
    kids = pop.crossover(SPACE, a, b, rng)
    for k, x, y in zip(kids[2:], a[2:], b[2:]):
        assert ((k == x) | (k == y)).all()
    # mutation probability 0 changes nothing
    assert all(np.array_equal(x, y) for x, y in zip(pop.mutate(SPACE, a, 0.0, rng), a))


def test_unique_detects_equal_networks():
    rng = np.random.default_rng(4)
    genes = pop.sample(SPACE, 50, rng)
    # same networks with different junk in skipped slots
    junk = tuple(g.copy() for g in genes)
    skipped = ~SPACE.active_mask(junk[2])
    junk[0][skipped] = 7
    doubled = pop.canonicalize(SPACE, pop.concat([genes, junk]))
    uniq, first = pop.unique(doubled)
    expected = len({a.id for a in pop.to_archs(genes)})
    assert pop.size(uniq) == expected and (first < 50).all()


# -- evolution -------------------------------------------------------------------------------
def test_evolution_respects_budgets_and_finds_good_archs():
    budgets = [floor_ms() + 0.05, 1.5, 3.0]
    res = evolution_search(synth_latency, synth_accuracy, budgets, SPACE, generations=GEN, seed=0)
    assert [w.budget_ms for w in res.winners] == budgets
    for w in res.winners:
        assert SPACE.contains(w.arch)
        lat = float(synth_latency(pop.from_archs([w.arch]))[0])
        assert lat <= w.budget_ms and lat == pytest.approx(w.latency_ms)
        assert w.accuracy == pytest.approx(float(synth_accuracy(pop.from_archs([w.arch]))[0]))
    accs = [w.accuracy for w in res.winners]
    assert accs == sorted(accs)  # a looser budget never loses
    # better than the best of as many random feasible samples as the search evaluated
    rng = np.random.default_rng(9)
    rand = pop.sample(SPACE, 2000, rng)
    lat, acc = synth_latency(rand), synth_accuracy(rand)
    assert res.winners[2].accuracy >= acc[lat <= 3.0].max()
    assert (np.diff(res.history, axis=1) >= 0).all()  # elitism: the best never gets worse
    assert res.n_latency_evals > 0 and res.n_accuracy_evals > 0


def test_evolution_is_deterministic_under_a_seed():
    run = lambda s: evolution_search(synth_latency, synth_accuracy, [1.3, 2.0], SPACE,  # noqa: E731
                                     generations=10, population_size=20, seed=s)
    a, b, c = run(5), run(5), run(6)
    assert a.winners == b.winners
    np.testing.assert_array_equal(a.history, b.history)
    assert a.n_latency_evals == b.n_latency_evals
    assert c.winners[0].budget_ms == a.winners[0].budget_ms


def test_impossible_budget_names_the_smallest_feasible_budget():
    floor = floor_ms()
    with pytest.raises(InfeasibleBudgetError) as err:
        evolution_search(synth_latency, synth_accuracy, [3.0, floor / 2], SPACE, generations=2, target="tiny-cpu")
    msg = str(err.value)
    assert "\n" not in msg and "tiny-cpu" in msg
    shown = float(msg.rsplit("at least ", 1)[1].split()[0])
    assert floor <= shown < floor + 0.002
    # the named budget works
    res = evolution_search(synth_latency, synth_accuracy, [shown], SPACE, generations=3, population_size=10)
    assert res.winners[0].latency_ms <= shown


def test_floor_found_when_smallest_arch_is_not_fastest():
    """A learned predictor need not be monotone: the floor comes from samples too."""
    def bumpy(genes):
        lat = synth_latency(genes)
        return np.where((genes[0] == 3).all(1) & (genes[3] == 32), lat + 5.0, lat)

    sampled = bumpy(pop.sample(SPACE, 5000, np.random.default_rng(0))).min()
    res = evolution_search(bumpy, synth_accuracy, [sampled + 0.5], SPACE, generations=3, population_size=10)
    assert res.latency_floor_ms < float(bumpy(pop.smallest(SPACE))[0])
    with pytest.raises(InfeasibleBudgetError):
        evolution_search(bumpy, synth_accuracy, [res.latency_floor_ms - 0.01], SPACE, generations=1)


# -- NSGA-II ---------------------------------------------------------------------------------
def test_non_dominated_sort_small_case():
    obj = np.array([[1, 5], [2, 2], [5, 1], [3, 3], [6, 6], [2, 2]], dtype=float)
    np.testing.assert_array_equal(non_dominated_sort(obj), [0, 0, 0, 1, 2, 0])
    idx = pareto_indices(-obj[:, 0], obj[:, 1])  # accuracy = -first, latency = second
    assert idx.tolist() == [2, 1, 0]  # by latency; the copy of row 1 is dropped


def test_pareto_front_is_non_dominated_and_picks_are_its_best():
    front = nsga2_search(synth_latency, synth_accuracy, SPACE, generations=GEN, population_size=40, seed=0)
    acc, lat = front.accuracy, front.latency_ms
    assert len(front) >= 5
    assert (np.diff(lat) > 0).all() and (np.diff(acc) > 0).all()
    dominated = (acc[None, :] >= acc[:, None]) & (lat[None, :] <= lat[:, None]) & \
                ((acc[None, :] > acc[:, None]) | (lat[None, :] < lat[:, None]))
    assert not dominated.any()
    assert lat[0] == pytest.approx(front.latency_floor_ms)
    for budget in (lat[0], 1.5, 2.5, float(lat[-1]) + 1):
        w = best_under(front, budget)
        assert w.latency_ms <= budget
        assert w.accuracy == acc[lat <= budget].max()
    with pytest.raises(InfeasibleBudgetError, match="at least"):
        best_under(front, lat[0] / 2)
    again = nsga2_search(synth_latency, synth_accuracy, SPACE, generations=GEN, population_size=40, seed=0)
    np.testing.assert_array_equal(again.accuracy, acc)
    assert all(np.array_equal(x, y) for x, y in zip(again.genes, front.genes))


def test_pareto_max_latency_keeps_front_under_it():
    front = nsga2_search(synth_latency, synth_accuracy, SPACE, generations=10, population_size=20,
                         max_latency_ms=1.5, seed=1)
    assert (front.latency_ms <= 1.5).all()
    evo = evolution_search(synth_latency, synth_accuracy, [1.5], SPACE, generations=10, population_size=20)
    assert best_under(front, 1.5).latency_ms <= 1.5 and evo.winners[0].latency_ms <= 1.5
    with pytest.raises(InfeasibleBudgetError):
        nsga2_search(synth_latency, synth_accuracy, SPACE, generations=1, max_latency_ms=0.1)


def test_winner_to_dict_round_trips():
    res = evolution_search(synth_latency, synth_accuracy, [2.0], SPACE, generations=2, population_size=10)
    d = res.winners[0].to_dict()
    assert ArchConfig.from_dict(d["arch"]) == res.winners[0].arch


def test_two_objective_sort_equals_general_sort():
    from tvm_ofa.search import nsga2

    rng = np.random.default_rng(7)
    for _ in range(20):
        obj = rng.integers(0, 6, (60, 2)).astype(float)  # many ties and copies
        general = nsga2.non_dominated_sort(np.concatenate([obj, np.zeros((60, 1))], axis=1))
        np.testing.assert_array_equal(nsga2.non_dominated_sort(obj), general)
