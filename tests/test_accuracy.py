import json

import numpy as np
import pytest

from tvm_ofa.arch import archs_to_arrays
from tvm_ofa.data import ImageDataset
from tvm_ofa.predict.accuracy import (
    AccuracyPredictor,
    AccuracyPredictorError,
    AccuracyRecord,
    fit_best,
    measure_accuracies,
    read_records,
)


def _synthetic_records(space, n, seed=0):
    # accuracy grows with depth, kernel and expand, as real supernets roughly do, plus noise
    rng = np.random.default_rng(seed)
    archs = space.sample_many(n, rng)
    w = rng.uniform(0.0005, 0.002, space.encoding_size)
    acc = 0.7 + space.encode_batch(archs) @ w + rng.normal(0, 0.002, n)
    return [AccuracyRecord(a, float(y)) for a, y in zip(archs, acc)]


def test_fit_keeps_the_better_model_and_ranks_well(tiny_space, tmp_path):
    records = _synthetic_records(tiny_space, 300)
    pred, scores = fit_best(records, tiny_space, seed=0)
    assert set(scores) == {"mlp", "xgboost", "mean"}
    assert pred.kind == min(scores, key=lambda k: scores[k]["rmse_pct"])
    # every subnet is scored once, by the fold that held it out
    assert all(m["n"] == 300 and m["folds"] == 5 for m in scores.values())
    assert scores[pred.kind]["kendall_tau"] > 0.6
    test = _synthetic_records(tiny_space, 100, seed=0)[:0] or _synthetic_records(tiny_space, 300, seed=0)[-50:]
    path = pred.save(tmp_path / "acc.json", metrics=scores)
    loaded = AccuracyPredictor.load(path, tiny_space)
    archs = [r.arch for r in test]
    assert np.allclose(loaded.predict(archs), pred.predict(archs), atol=1e-5)
    # the array path searches use gives the same numbers
    assert np.allclose(loaded.predict(arrays=archs_to_arrays(archs)), pred.predict(archs), atol=1e-5)
    for kind in ("mlp", "xgboost", "mean"):
        fitted = AccuracyPredictor(tiny_space, kind).fit(records[:100])
        again = AccuracyPredictor.load(fitted.save(tmp_path / f"{kind}.json"), tiny_space)
        assert again.kind == kind and np.allclose(again.predict(archs), fitted.predict(archs), atol=1e-5)


def test_predictor_errors(tiny_space, tmp_path):
    with pytest.raises(AccuracyPredictorError, match="at least 10"):
        fit_best(_synthetic_records(tiny_space, 5), tiny_space)
    with pytest.raises(AccuracyPredictorError, match="tvm-ofa accuracy fit"):
        AccuracyPredictor.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(AccuracyPredictorError, match="corrupt"):
        AccuracyPredictor.load(tmp_path / "bad.json")
    from tvm_ofa import SearchSpace

    pred = AccuracyPredictor(tiny_space, "xgboost").fit(_synthetic_records(tiny_space, 20))
    pred.save(tmp_path / "p.json")
    with pytest.raises(AccuracyPredictorError, match="another search space"):
        AccuracyPredictor.load(tmp_path / "p.json", SearchSpace())


def test_measure_appends_resumes_and_survives_a_torn_line(tiny_supernet, tiny_space, tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (40, 3, 28, 28), dtype=np.uint8)
    data = ImageDataset(images, rng.integers(0, 10, 40), tuple("abcdefghij"), "synthetic")
    train, val = data.subset(np.arange(24)), data.subset(np.arange(24, 40))
    archs = tiny_space.sample_many(3, 1)
    out = tmp_path / "acc.jsonl"
    first = list(measure_accuracies(tiny_supernet, archs[:2], train, val, out, calib_batches=1, batch_size=8))
    assert len(first) == 2 and all(0.0 <= r.accuracy <= 1.0 for r in first)
    with out.open("a") as f:
        f.write('{"arch": {"ks": [3')  # a run killed mid-write
    again = list(measure_accuracies(tiny_supernet, archs, train, val, out, calib_batches=1, batch_size=8))
    assert [r.arch for r in again] == [archs[2]]
    records, skipped = read_records(out)
    assert len(records) == 3 and skipped == 1
    assert json.loads(out.read_text().splitlines()[0])["arch_id"] == archs[0].id
    # one file never mixes two checkpoints (or splits): extending it with another is refused
    with pytest.raises(AccuracyPredictorError, match="another checkpoint"):
        list(measure_accuracies(tiny_supernet, archs, train, val, out, calib_batches=1, batch_size=8,
                                checkpoint="0" * 64))
    assert len(read_records(out)[0]) == 3


def test_once_for_alls_accuracy_predictor_loads_and_predicts_as_the_official_package(tmp_path):
    """A checkpoint in the official layout (random weights) gives the official predictions; the
    arch dicts once-for-all writes are read as they are, and ``to_ofa`` writes that form."""
    import torch

    from ofa_oracle import import_official_ofa
    from tvm_ofa.arch import ArchConfig, SearchSpace
    from tvm_ofa.errors import ArchError
    from tvm_ofa.predict.accuracy import AccuracyPredictor, AccuracyPredictorError

    if import_official_ofa() is None:
        pytest.skip("the official once-for-all package is not installed (make install adds it)")
    from ofa.nas.accuracy_predictor import AccuracyPredictor as Official, MobileNetArchEncoder

    space = SearchSpace()
    torch.manual_seed(0)
    official = Official(MobileNetArchEncoder(image_size_list=list(space.resolutions)), device="cpu")
    with torch.no_grad():
        for p in official.parameters():
            p.normal_(0.0, 0.05)
        official.base_acc.fill_(0.78)
    path = tmp_path / "acc_predictor.pth"
    torch.save({"state_dict": official.state_dict()}, path)

    ours = AccuracyPredictor.load(path, space)
    archs = space.sample_many(64, rng=0)
    with torch.no_grad():
        want = official.predict_acc([{**a.to_ofa(), "image_size": a.resolution} for a in archs]).numpy()
    np.testing.assert_allclose(ours.predict(archs), want, atol=1e-5)
    with pytest.raises(AccuracyPredictorError, match="layers.0.0.weight: its 145 inputs encode 25 resolutions"):
        AccuracyPredictor.load(path, SearchSpace(resolutions=(128, 160)))

    arch = archs[0]
    assert arch.to_ofa() == {"wid": None, "ks": list(arch.ks), "e": list(arch.e), "d": list(arch.d),
                             "r": [arch.resolution]}
    assert ArchConfig.from_dict(arch.to_ofa()) == arch
    with pytest.raises(ArchError, match="wid = 1: this supernet has a single width"):
        ArchConfig.from_dict({**arch.to_ofa(), "wid": 1})


def test_measure_named_subnets_on_the_test_split(tiny_supernet, tmp_path, capsys):
    """`accuracy measure --arch ... --split test`: the final figures of named subnets, on the
    10,000 test images (one line per subnet), never mixed into the validation data."""
    from tvm_ofa import save_supernet
    from tvm_ofa.cli import main
    from tvm_ofa.data import FASHION_MNIST_DIR

    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip("apt-get install dataset-fashion-mnist (make test does it as root)")
    ckpt = save_supernet(tiny_supernet, tmp_path / "net.pt")
    out = tmp_path / "test.jsonl"
    assert main(["accuracy", "measure", "--checkpoint", str(ckpt), "--arch", "smallest", "largest",
                 "--split", "test", "--max-val-batches", "1", "--calib-batches", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and all(0.0 <= r["accuracy"] <= 1.0 for r in rows)
    assert "fashion-mnist:test" in printed.out
    assert sum(line.startswith("r") and ": " in line for line in (printed.out + printed.err).splitlines()) == 2


def test_subnet_evaluator_matches_a_plain_evaluation_and_reuses_its_images(tiny_supernet, tiny_space):
    """The cached channels-last evaluator gives the accuracy of the plain path (extract,
    recalibrate on the same training batches, evaluate NCHW), for several subnets in a row."""
    from tvm_ofa.data import elastic_batches
    from tvm_ofa.train.evaluate import SubnetEvaluator, accuracy, recalibrate_bn

    rng = np.random.default_rng(1)
    data = ImageDataset(rng.integers(0, 255, (60, 3, 28, 28), dtype=np.uint8), rng.integers(0, 10, 60),
                        tuple("abcdefghij"), "synthetic")
    train, val = data.subset(np.arange(32)), data.subset(np.arange(32, 60))
    evaluate = SubnetEvaluator(tiny_supernet, train, val, calib_batches=2, batch_size=8)
    archs = tiny_space.sample_many(3, 2) + [tiny_space.largest(40)]
    for arch in archs:
        sub = tiny_supernet.extract(arch)
        recalibrate_bn(sub, (x for x, _, _ in elastic_batches(train, 8, [arch.resolution], seed=1, augment=False,
                                                              max_batches=2)))
        assert evaluate(arch) == pytest.approx(accuracy(sub, val, arch.resolution, batch_size=8))
    assert evaluate.n_images == 28
    assert set(evaluate._cache) == {a.resolution for a in archs}


def test_a_fitted_predictor_names_the_checkpoint_it_was_measured_on(tiny_space, tmp_path):
    records = [AccuracyRecord(r.arch, r.accuracy, "ab" * 32, "x:val") for r in _synthetic_records(tiny_space, 20)]
    pred = AccuracyPredictor(tiny_space, "xgboost").fit(records)
    assert AccuracyPredictor.load(pred.save(tmp_path / "p.json"), tiny_space).info["checkpoint"] == "ab" * 32
    # records of unnamed or several checkpoints name none
    assert "checkpoint" not in AccuracyPredictor(tiny_space, "xgboost").fit(_synthetic_records(tiny_space, 20)).info
