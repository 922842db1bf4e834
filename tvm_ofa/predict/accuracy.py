"""Accuracy predictor: from an arch's one-hot encoding to its validation accuracy.

Training data are subnets measured on the validation split after BN recalibration, appended to a
JSONL file as they are measured (a rerun skips what is there). Two models are fitted, an MLP as in
once-for-all (three hidden layers of 400, plus a learned base accuracy) and XGBoost; the one with
the lower held-out RMSE is kept.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from tvm_ofa.arch import ArchConfig, SearchSpace
from tvm_ofa.errors import TvmOfaError

FORMAT = "tvm-ofa-accuracy-predictor"


class AccuracyPredictorError(TvmOfaError):
    """A missing, foreign or unusable accuracy predictor or dataset."""


@dataclass(frozen=True)
class AccuracyRecord:
    arch: ArchConfig
    accuracy: float
    # what was measured: the checkpoint's sha256 and the split (None in files of older versions)
    checkpoint: str | None = None
    split: str | None = None


def read_records(path: str | Path) -> tuple[list[AccuracyRecord], int]:
    """Records of a JSONL file and the number of unreadable lines skipped (a torn last line after
    an interrupted run among them)."""
    path = Path(path)
    records, skipped = [], 0
    if not path.is_file():
        return records, skipped
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            records.append(AccuracyRecord(ArchConfig.from_dict(row["arch"]), float(row["accuracy"]),
                                          row.get("checkpoint"), row.get("split")))
        except (ValueError, KeyError, TypeError, TvmOfaError):
            skipped += 1
    return records, skipped


def measure_accuracies(supernet: Any, archs: Sequence[ArchConfig], train: Any, val: Any, out: str | Path,
                       calib_batches: int = 16, batch_size: int = 128, device: str = "cpu",
                       max_val_batches: int | None = None, checkpoint: str | None = None
                       ) -> Iterator[AccuracyRecord]:
    """Measure each arch (BN recalibrated) and append it to ``out``; archs already there are
    skipped, so an interrupted run resumes. Yields the new records as they are written.

    Each line names the checkpoint (``checkpoint``: its sha256) and the split measured; a file
    holding another checkpoint's or split's measurements is refused rather than extended, so one
    file never mixes two networks."""
    from tvm_ofa.train.evaluate import SubnetEvaluator

    out = Path(out)
    existing = read_records(out)[0]
    for r in existing:
        if (r.checkpoint, r.split) != (checkpoint, val.name):
            raise AccuracyPredictorError(
                f"{out}: holds measurements of another checkpoint or split ({r.checkpoint or 'unnamed'}, "
                f"{r.split or 'unnamed'}; measuring {checkpoint or 'unnamed'}, {val.name}): write to a new file")
    evaluate = SubnetEvaluator(supernet, train, val, calib_batches, batch_size, device, max_val_batches)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {r.arch.id for r in existing}
    if out.is_file() and out.stat().st_size and not out.read_bytes().endswith(b"\n"):
        # a run killed mid-write left a torn line: close it so the next record stays intact
        with out.open("a") as f:
            f.write("\n")
    for arch in archs:
        if arch.id in done:
            continue
        acc = evaluate(arch)
        with out.open("a") as f:
            f.write(json.dumps({"arch_id": arch.id, "arch": arch.to_dict(), "accuracy": acc,
                                "checkpoint": checkpoint, "split": val.name}) + "\n")
        done.add(arch.id)
        yield AccuracyRecord(arch, acc, checkpoint, val.name)


class AccuracyPredictor:
    """Predicts accuracy (0..1) from archs or from ``(ks, e, d, r)`` arrays.

    Parameters
    ----------
    space : SearchSpace
    kind : {"mlp", "xgboost"}
    """

    def __init__(self, space: SearchSpace, kind: str = "mlp"):
        if kind not in _MODELS:
            raise AccuracyPredictorError(f"unknown accuracy model {kind!r}; choose {', '.join(_MODELS)}")
        self.space, self.kind = space, kind
        self.model: Any = None
        self.info: dict[str, Any] = {}

    def _features(self, archs: Sequence[ArchConfig] | None, arrays: tuple | None) -> np.ndarray:
        if arrays is None:
            return self.space.encode_batch(list(archs or []))
        return self.space.encode_arrays(*arrays)

    def fit(self, records: Sequence[AccuracyRecord], seed: int = 0) -> "AccuracyPredictor":
        x = self.space.encode_batch([r.arch for r in records])
        y = np.array([r.accuracy for r in records], dtype=np.float32)
        self.model = _MODELS[self.kind][0](x, y, seed)
        self.info = {"n_train": len(records), "seed": seed}
        measured = {r.checkpoint for r in records}
        if len(measured) == 1 and None not in measured:
            self.info["checkpoint"] = measured.pop()  # the sha256 of the supernet it predicts
        return self

    def predict(self, archs: Sequence[ArchConfig] | None = None, *, arrays: tuple | None = None) -> np.ndarray:
        if self.model is None:
            raise AccuracyPredictorError("the accuracy predictor is not fitted")
        return _MODELS[self.kind][1](self.model, self._features(archs, arrays))

    def save(self, path: str | Path, metrics: dict[str, Any] | None = None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = _MODELS[self.kind][2](self.model)
        doc = {"format": FORMAT, "version": 1, "kind": self.kind, "space": self.space.to_dict(),
               "info": self.info, "metrics": metrics or {}, "model": state}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, space: SearchSpace | None = None) -> "AccuracyPredictor":
        """A predictor saved by :meth:`save`, or once-for-all's own checkpoint
        (:meth:`from_ofa`, recognised as a PyTorch file)."""
        import zipfile

        path = Path(path)
        if path.is_file() and zipfile.is_zipfile(path):
            return cls.from_ofa(path, space or SearchSpace())
        try:
            doc = json.loads(path.read_text())
        except OSError:
            raise AccuracyPredictorError(f"{path}: no accuracy predictor; create one with "
                                         "`tvm-ofa accuracy fit`") from None
        except json.JSONDecodeError as err:
            raise AccuracyPredictorError(f"{path}: corrupt accuracy predictor (line {err.lineno})") from None
        if doc.get("format") != FORMAT:
            raise AccuracyPredictorError(f"{path}: not a tvm-ofa accuracy predictor")
        saved_space = SearchSpace.from_dict(doc["space"])
        if space is not None and saved_space != space:
            raise AccuracyPredictorError(f"{path}: fitted for another search space than the supernet's")
        pred = cls(saved_space, doc["kind"])
        pred.model = _MODELS[doc["kind"]][3](doc["model"])
        pred.info = doc.get("info", {})
        pred.info["metrics"] = doc.get("metrics", {})
        return pred


    @classmethod
    def from_ofa(cls, path: str | Path, space: SearchSpace) -> "AccuracyPredictor":
        """once-for-all's accuracy predictor checkpoint (``ofa/nas/accuracy_predictor``: an MLP of
        ``Linear``+``ReLU`` layers and a bias-free output, plus ``base_acc``, on its arch encoder's
        one-hot features) as a predictor of ``space``, giving the official predictions.

        The official encoder orders its features resolution, then kernel per block slot, then
        expand per slot; :meth:`SearchSpace.encode` orders kernel, expand, resolution, so the first
        layer's columns are permuted once here."""
        from tvm_ofa.nn.checkpoint import read_checkpoint

        state = read_checkpoint(path)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        keys = sorted(k for k in (state if isinstance(state, dict) else {}) if k.startswith("layers."))
        if not keys or "base_acc" not in state:
            raise AccuracyPredictorError(f"{path}: not once-for-all's accuracy predictor (expected "
                                         "layers.*.weight and base_acc)")
        hidden = sorted({int(k.split(".")[1]) for k in keys})
        weights, biases = [], []
        for i in hidden[:-1]:
            weights.append(state[f"layers.{i}.0.weight"].float().numpy())
            biases.append(state[f"layers.{i}.0.bias"].float().numpy())
        weights.append(state[f"layers.{hidden[-1]}.weight"].float().numpy())
        biases.append(None)
        nb, nk, ne = space.n_blocks, len(space.ks_choices), len(space.e_choices)
        n_r = weights[0].shape[1] - nb * (nk + ne)
        if n_r != len(space.resolutions):
            raise AccuracyPredictorError(
                f"{path}: layers.0.0.weight: its {weights[0].shape[1]} inputs encode {n_r} resolutions, "
                f"the supernet's space has {len(space.resolutions)} ({min(space.resolutions)}.."
                f"{max(space.resolutions)} px)")
        order = np.concatenate([np.arange(n_r, n_r + nb * (nk + ne)), np.arange(n_r)])
        weights[0] = np.ascontiguousarray(weights[0][:, order])
        pred = cls(space, "mlp")
        pred.model = {"base": float(state["base_acc"].reshape(-1)[0]), "weights": weights, "biases": biases}
        pred.info = {"source": f"once-for-all checkpoint {path}"}
        return pred


# -- models ------------------------------------------------------------------------------------
def _fit_mlp(x: np.ndarray, y: np.ndarray, seed: int, hidden: int = 400, epochs: int = 400) -> dict[str, Any]:
    import torch

    threads = torch.get_num_threads()
    # these matrices are too small to gain from threads; on a busy machine threads cost 10x
    torch.set_num_threads(1)
    try:
        return _train_mlp(torch, x, y, seed, hidden, epochs)
    finally:
        torch.set_num_threads(threads)


def _train_mlp(torch: Any, x: np.ndarray, y: np.ndarray, seed: int, hidden: int, epochs: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(),
                              torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
                              torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
                              torch.nn.Linear(hidden, 1, bias=False))
    # once-for-all's base accuracy: the network learns deviations from the mean
    base = float(y.mean())
    xt, yt = torch.from_numpy(x), torch.from_numpy(y - base)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    batch = min(256, len(x))
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            loss = torch.nn.functional.mse_loss(net(xt[idx]).squeeze(1), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    layers = [m for m in net if isinstance(m, torch.nn.Linear)]
    return {"base": base, "weights": [m.weight.detach().numpy() for m in layers],
            "biases": [None if m.bias is None else m.bias.detach().numpy() for m in layers]}


def _predict_mlp(model: dict[str, Any], x: np.ndarray) -> np.ndarray:
    # numpy forward: no torch import or autograd overhead in the search's hot loop
    h = x
    n = len(model["weights"])
    for i, (w, b) in enumerate(zip(model["weights"], model["biases"])):
        h = h @ w.T
        if b is not None:
            h = h + b
        if i < n - 1:
            np.maximum(h, 0, out=h)
    return h[:, 0] + model["base"]


def _mlp_state(model: dict[str, Any]) -> dict[str, Any]:
    return {"base": model["base"], "weights": [w.tolist() for w in model["weights"]],
            "biases": [None if b is None else b.tolist() for b in model["biases"]]}


def _mlp_from_state(state: dict[str, Any]) -> dict[str, Any]:
    return {"base": state["base"], "weights": [np.asarray(w, np.float32) for w in state["weights"]],
            "biases": [None if b is None else np.asarray(b, np.float32) for b in state["biases"]]}


def _fit_xgb(x: np.ndarray, y: np.ndarray, seed: int) -> Any:
    import xgboost as xgb

    params = {"max_depth": 4, "eta": 0.05, "subsample": 0.9, "colsample_bytree": 0.8, "seed": seed,
              "nthread": 2, "objective": "reg:squarederror"}
    return xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=400)


def _predict_xgb(model: Any, x: np.ndarray) -> np.ndarray:
    import xgboost as xgb

    return model.predict(xgb.DMatrix(x))


def _xgb_state(model: Any) -> str:
    return model.save_raw("json").decode()


def _xgb_from_state(state: str) -> Any:
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray(state.encode()))
    return booster


def _fit_mean(x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
    # the two models err differently (the MLP smooth, the trees piecewise): their mean ranks noisy
    # subnets better than either
    return {"mlp": _fit_mlp(x, y, seed), "xgboost": _fit_xgb(x, y, seed)}


def _predict_mean(model: dict[str, Any], x: np.ndarray) -> np.ndarray:
    return 0.5 * (_predict_mlp(model["mlp"], x) + _predict_xgb(model["xgboost"], x))


# kind -> (fit, predict, to_state, from_state)
_MODELS = {
    "mlp": (_fit_mlp, _predict_mlp, _mlp_state, _mlp_from_state),
    "xgboost": (_fit_xgb, _predict_xgb, _xgb_state, _xgb_from_state),
    "mean": (_fit_mean, _predict_mean,
             lambda m: {"mlp": _mlp_state(m["mlp"]), "xgboost": _xgb_state(m["xgboost"])},
             lambda s: {"mlp": _mlp_from_state(s["mlp"]), "xgboost": _xgb_from_state(s["xgboost"])}),
}


def metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Held-out RMSE (accuracy points, 0..100 scale) and Kendall tau."""
    from scipy.stats import kendalltau

    rmse = float(np.sqrt(np.mean((pred - true) ** 2)) * 100)
    tau = float(kendalltau(pred, true).statistic) if len(true) > 1 else math.nan
    return {"rmse_pct": rmse, "kendall_tau": tau, "n": int(len(true))}


def fit_best(records: Sequence[AccuracyRecord], space: SearchSpace, folds: int = 5,
             seed: int = 0) -> tuple[AccuracyPredictor, dict[str, dict[str, float]]]:
    """Score every model by ``folds``-fold cross-validation (each subnet predicted by a model that
    never saw it; RMSE and Kendall tau over all of them), keep the one with the lowest RMSE and
    refit it on all records. Returns the predictor and each model's held-out metrics.

    Pooling the held-out predictions of every fold scores each model on all measured subnets, not
    on one fifth of them: on 100 subnets tau moves by about 0.04 from one split to the next."""
    if len(records) < max(10, folds):
        raise AccuracyPredictorError(f"need at least {max(10, folds)} measured subnets to fit, have {len(records)}")
    fold_of = np.random.default_rng(seed).permutation(len(records)) % folds
    x = space.encode_batch([r.arch for r in records])
    y = np.array([r.accuracy for r in records], dtype=np.float32)
    held = {kind: np.empty(len(records)) for kind in _MODELS}
    for k in range(folds):
        test = fold_of == k
        # "mean" is fitted as its two parts are, so their fits serve it too
        parts = _fit_mean(x[~test], y[~test], seed)
        held["mlp"][test] = _predict_mlp(parts["mlp"], x[test])
        held["xgboost"][test] = _predict_xgb(parts["xgboost"], x[test])
        held["mean"][test] = _predict_mean(parts, x[test])
    scores = {kind: {**metrics(held[kind], y), "folds": folds} for kind in _MODELS}
    best = min(scores, key=lambda k: scores[k]["rmse_pct"])
    final = AccuracyPredictor(space, best).fit(records, seed)
    final.info["holdout"] = scores
    return final, scores
