"""Latency of a subnet after tuning and compiling for a target, predicted from that target's
tuning logs.

Network latency = ``scale * task_sum + c0 + c1 * n_tasks``: ``task_sum`` is the sum over the
subnet's fused tasks (times their weight) of the per-workload latency; the calibration
(``scale, c0, c1 >= 0``) is fitted against measured end-to-end latencies (the Relax VM's call and
allocation cost, which no tuning record contains, and the gap between the tuner's isolated
timings and a whole network's).

Per-workload latency comes from one of :data:`PREDICTORS`:

- ``xgboost``: a tuned workload's own measured latency, shrunk a cross-validated amount towards
  what trees that never saw it predict; gradient-boosted trees on workload descriptors
  (log-latency target) for the shapes never tuned.
- ``macs``: latency proportional to MACs (one fitted constant): the classic proxy.
- ``lookup``: the measured latency where the workload was tuned; an unseen workload falls back
  to its kind's median seconds-per-MAC, which is where it loses.

Every predictor caches its per-workload predictions over the whole :class:`WorkloadTable` of the
space (one model call), so ``predict`` on a batch of archs is integer gathers and a sum.
"""
from __future__ import annotations

import copy
import datetime as _dt
import json
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tvm_ofa.arch import ArchConfig, SearchSpace
from tvm_ofa.errors import TvmOfaError
from tvm_ofa.compiler.store import PREDICTOR_FILE, model_name, predictor_files, predictor_name
from tvm_ofa.predict.dataset import Measurement, WorkloadDataset, key_fold
from tvm_ofa.predict.workloads import FEATURES, KINDS, NetConfig, Workload, WorkloadTable, feature_matrix

FORMAT = 1
# how far a tuned workload's measured time may be shrunk towards the trees' cross-fitted
# prediction (chosen by cross-validation over the end-to-end measurements)
SHRINK_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
SHRINK_MIN_MEASUREMENTS = 10


class LatencyPredictorError(TvmOfaError):
    """A predictor that cannot be fitted, loaded or used here."""


class CpuMismatchWarning(UserWarning):
    """The predictor describes another CPU than this one."""


_WARNED: set[tuple[str, str]] = set()


class LatencyPredictor:
    """Base class: per-workload latency model + end-to-end calibration.

    Parameters
    ----------
    space : SearchSpace
        The archs it predicts for (an arch outside raises ``ArchError``).
    net : NetConfig
        Width, classes, stem stride and batch of the measured network.
    """

    kind = "base"

    def __init__(self, space: SearchSpace | None = None, net: NetConfig | None = None):
        self.space = space or SearchSpace()
        self.net = net or NetConfig()
        self.calibration = (1.0, 0.0, 0.0)  # scale of the task sum, ms per network, ms per task
        self.meta: dict[str, Any] = {}
        self._table: WorkloadTable | None = None
        self._op_ms: np.ndarray | None = None

    # -- per-workload model (subclasses) -------------------------------------------------------
    def _fit_ops(self, data: WorkloadDataset) -> None:
        raise NotImplementedError

    def _predict_ops_s(self, workloads: Sequence[Workload]) -> np.ndarray:
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        return {}

    def _load_state(self, state: dict[str, Any], folder: Path) -> None:
        pass

    # -- shared --------------------------------------------------------------------------------
    @property
    def table(self) -> WorkloadTable:
        if self._table is None:
            self._table = WorkloadTable(self.space, self.net)
        return self._table

    def workload_ms(self, workloads: Sequence[Workload]) -> np.ndarray:
        """Predicted tuned latency of each workload, milliseconds."""
        if not len(workloads):
            return np.zeros(0)
        return 1e3 * np.asarray(self._predict_ops_s(workloads), dtype=np.float64)

    def _table_ms(self) -> np.ndarray:
        if self._op_ms is None:
            # one model call for every workload of the space; a trailing 0 for absent ops (-1)
            self._op_ms = np.append(self.workload_ms(self.table.workloads), 0.0)
        return self._op_ms

    def op_sum_ms(self, archs: Sequence[ArchConfig] | None = None, *, arrays: tuple | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """``(sum of task latencies, number of tasks)`` per arch, before calibration."""
        ids = self.table.ids(archs, arrays=arrays)
        return self._table_ms()[ids].sum(axis=1), (ids >= 0).sum(axis=1)

    @property
    def fitted_resolutions(self) -> tuple[int, ...]:
        """The resolutions of the space it was fitted for (its measurements' and records')."""
        return tuple(self.meta.get("fitted_resolutions") or self.space.resolutions)

    def for_space(self, space: SearchSpace) -> "LatencyPredictor":
        """This predictor answering for ``space``: the same network and choices, other resolutions.

        The per-workload model reads analytic descriptors, so a resolution it was not fitted at
        is one more set of shapes: between the fitted ones an interpolation, outside them an
        extrapolation (:meth:`extrapolated` names those)."""
        if (space.ks_choices, space.e_choices, space.d_choices, space.n_stages) != \
                (self.space.ks_choices, self.space.e_choices, self.space.d_choices, self.space.n_stages):
            raise LatencyPredictorError(
                f"the latency predictor was fitted for kernel {list(self.space.ks_choices)}, expand "
                f"{list(self.space.e_choices)}, depth {list(self.space.d_choices)}; this space differs")
        if space == self.space:
            return self
        out = copy.copy(self)
        out.meta = {**self.meta, "fitted_resolutions": list(self.fitted_resolutions)}
        out.space, out._table, out._op_ms = space, None, None
        return out

    def recorded(self, key: str) -> bool:
        """Whether the workload ``key`` had a tuning record here when the predictor was fitted."""
        return False

    def untuned_ms(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        """Per arch, the part of its task sum (before calibration) from workloads without a
        record: what runs TVM's default schedule until those workloads are tuned."""
        ids = self.table.ids(archs)
        op_ms = self._table_ms()
        untuned = np.array([not self.recorded(w.key) for w in self.table.workloads] + [False])
        return np.where(untuned[ids], op_ms[ids], 0.0).sum(axis=1)

    def extrapolated(self, resolutions: Sequence[int]) -> list[int]:
        """Those of ``resolutions`` outside the range the predictor was fitted over."""
        lo, hi = min(self.fitted_resolutions), max(self.fitted_resolutions)
        return sorted({int(r) for r in resolutions if not lo <= r <= hi})

    def predict(self, archs: Sequence[ArchConfig] | None = None, *, arrays: tuple | None = None) -> np.ndarray:
        """Predicted end-to-end latency, ms, of each arch.

        Parameters
        ----------
        archs : sequence of ArchConfig
        arrays : tuple, optional
            ``(ks, e, d, resolution)`` integer arrays instead of ``archs`` (a search's encoding,
            skips building ArchConfig objects).
        """
        total, n_ops = self.op_sum_ms(archs, arrays=arrays)
        scale, c0, c1 = self.calibration
        return scale * total + c0 + c1 * n_ops

    def fit(self, data: WorkloadDataset, measurements: Sequence[Measurement] = ()) -> "LatencyPredictor":
        """Fit the per-workload model on ``data``, then the calibration on ``measurements`` (those of
        another network config are ignored)."""
        if len(data) == 0:
            raise LatencyPredictorError(f"{data.source or 'dataset'}: no OFA workload with a valid "
                                        "tuning record to learn from")
        self._fit_ops(data)
        self._op_ms = None
        self.calibrate(measurements)
        self.meta.update({"n_workloads": len(data), "n_records": data.total_records,
                          "skipped_lines": data.skipped_lines, "foreign_workloads": data.foreign_workloads})
        return self

    def calibrate(self, measurements: Sequence[Measurement]) -> None:
        ms = [m for m in measurements if m.net == self.net and self.space.contains(m.arch)]
        self.meta["n_measurements"] = len(ms)
        self.calibration = (1.0, 0.0, 0.0)
        if not ms:
            return
        total, n_ops = self.op_sum_ms([m.arch for m in ms])
        y = np.array([m.latency_ms for m in ms])
        if len(ms) < 8:
            # too few to separate scale from offsets; a ratio keeps predictions positive
            self.calibration = (float(np.median(y / np.maximum(total, 1e-9))), 0.0, 0.0)
            return
        from scipy.optimize import nnls

        # relative error matters (small and large subnets alike): weight rows by 1/y
        a = np.stack([total, np.ones(len(ms)), n_ops.astype(np.float64)], axis=1) / y[:, None]
        coef, _ = nnls(a, np.ones(len(ms)))
        if coef[0] <= 0:
            coef = np.array([float(np.median(y / np.maximum(total, 1e-9))), 0.0, 0.0])
        self.calibration = tuple(float(c) for c in coef)

    # -- persistence ---------------------------------------------------------------------------
    def save(self, folder: str | Path, provenance: dict[str, Any]) -> Path:
        """Write ``latency_predictor.json`` (+ the model file) into ``folder``.

        Parameters
        ----------
        provenance : dict
            ``tvm_ofa.targets.host_provenance(cfg)``: target, CPU, features, threads, TVM version.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        doc = {"format": FORMAT, "kind": self.kind,
               "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               **{k: provenance.get(k) for k in ("target", "resolved_target", "cpu", "cpu_features",
                                                 "threads", "tvm_version")},
               **self.meta, "net": self.net.to_dict(), "space": self.space.to_dict(),
               "calibration": {"scale": self.calibration[0], "ms_per_network": self.calibration[1],
                               "ms_per_task": self.calibration[2]}, "features": list(FEATURES),
               "state": self._state_for_save(folder)}
        path = folder / predictor_file(self.net, self.space)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        tmp.replace(path)
        return path

    def _state_for_save(self, folder: Path) -> dict[str, Any]:
        return self._state()


class XGBoostPredictor(LatencyPredictor):
    """Gradient-boosted trees on :data:`FEATURES`, trained on log(seconds), for the workloads
    never tuned. A tuned workload is predicted by its measured time (the schedule the build will
    use), shrunk towards what trees that never saw it predict: ``measured**(1 - a) *
    cross_fitted**a``. One record's time is a noisy reading of its schedule's speed, and its
    shape's neighbours carry information about it; ``a`` (:attr:`shrink`, from
    :data:`SHRINK_GRID`) is chosen by cross-validation over the end-to-end measurements, 0 with
    fewer than :data:`SHRINK_MIN_MEASUREMENTS` of them."""

    kind = "xgboost"
    params = {"max_depth": 6, "eta": 0.08, "subsample": 0.9, "colsample_bytree": 0.9,
              "min_child_weight": 1.0, "objective": "reg:squarederror", "nthread": 1, "seed": 0}
    rounds = 400
    folds = 5

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.booster: Any = None
        self.tuned: dict[str, float] = {}  # workload key -> its record's seconds, shrunk
        self.shrink = 0.0
        self._measured: dict[str, float] = {}
        self._cross: dict[str, float] = {}

    def _train(self, data: WorkloadDataset) -> Any:
        import xgboost as xgb

        dtrain = xgb.DMatrix(feature_matrix(data.workloads), label=np.log(data.latency_s),
                             feature_names=list(FEATURES))
        return xgb.train(self.params, dtrain, num_boost_round=self.rounds)

    @staticmethod
    def _trees_s(booster: Any, workloads: Sequence[Workload]) -> np.ndarray:
        import xgboost as xgb

        d = xgb.DMatrix(feature_matrix(workloads), feature_names=list(FEATURES))
        return np.exp(booster.predict(d)).astype(np.float64)

    def _fit_ops(self, data: WorkloadDataset) -> None:
        self.booster = self._train(data)
        self._measured = data.by_key()
        # each workload as predicted by trees trained on the other folds (by key hash: stable)
        fold = np.array([key_fold(w.key, self.folds) for w in data.workloads])
        self._cross = {}
        if len(data) >= 4 * self.folds:
            for k in range(self.folds):
                idx = np.flatnonzero(fold == k)
                if len(idx) and len(idx) < len(data):
                    got = self._trees_s(self._train(data.subset(fold != k)), [data.workloads[i] for i in idx])
                    self._cross.update({data.workloads[i].key: float(g) for i, g in zip(idx, got)})
        self._set_shrink(0.0)

    def _set_shrink(self, a: float) -> None:
        self.shrink = float(a)
        self.tuned = {k: float(v ** (1.0 - a) * self._cross.get(k, v) ** a) for k, v in self._measured.items()}
        self._op_ms = None

    def calibrate(self, measurements: Sequence[Measurement]) -> None:
        ms = [m for m in measurements if m.net == self.net and self.space.contains(m.arch)]
        if self._cross and len(ms) >= SHRINK_MIN_MEASUREMENTS:
            order = np.arange(len(ms)) % self.folds  # measurements in file order: interleaved folds
            best = (np.inf, 0.0)
            for a in SHRINK_GRID:
                self._set_shrink(a)
                err = []
                for k in range(self.folds):
                    fit = [m for m, g in zip(ms, order) if g != k]
                    val = [m for m, g in zip(ms, order) if g == k]
                    LatencyPredictor.calibrate(self, fit)
                    y = np.array([m.latency_ms for m in val])
                    err.extend(np.abs(self.predict([m.arch for m in val]) - y) / y)
                best = min(best, (float(np.mean(err)), a))
            self._set_shrink(best[1])
            self.meta["shrink_cv_mape"] = round(100 * best[0], 3)
        LatencyPredictor.calibrate(self, measurements)
        self.meta["shrink"] = self.shrink

    def recorded(self, key: str) -> bool:
        return key in self.tuned

    def _predict_ops_s(self, workloads: Sequence[Workload]) -> np.ndarray:
        out = self._trees_s(self.booster, workloads)
        for i, w in enumerate(workloads):
            if w.key in self.tuned:
                out[i] = self.tuned[w.key]
        return out

    def _state_for_save(self, folder: Path) -> dict[str, Any]:
        name = model_name(predictor_file(self.net, self.space))
        self.booster.save_model(str(folder / name))
        return {"model_file": name, "tuned": self.tuned, "shrink": self.shrink}

    def _load_state(self, state: dict[str, Any], folder: Path) -> None:
        import xgboost as xgb

        path = folder / state.get("model_file", model_name(PREDICTOR_FILE))
        if not path.is_file():
            raise LatencyPredictorError(f"{path}: model file missing; refit with `tvm-ofa latency fit`")
        self.booster = xgb.Booster(params={"nthread": 1})
        self.booster.load_model(str(path))
        self.tuned = {str(k): float(v) for k, v in (state.get("tuned") or {}).items()}
        self.shrink = float(state.get("shrink", 0.0))


class MacsPredictor(LatencyPredictor):
    """Baseline: task latency = ``a * MACs`` (memory-bound tasks get their element count)."""

    kind = "macs"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.s_per_mac = 0.0

    @staticmethod
    def _work(workloads: Sequence[Workload]) -> np.ndarray:
        return np.array([max(w.macs, w.out_elems) for w in workloads], dtype=np.float64)

    def _fit_ops(self, data: WorkloadDataset) -> None:
        self.s_per_mac = float(data.latency_s.sum() / self._work(data.workloads).sum())

    def _predict_ops_s(self, workloads: Sequence[Workload]) -> np.ndarray:
        return self.s_per_mac * self._work(workloads)

    def _state(self) -> dict[str, Any]:
        return {"s_per_mac": self.s_per_mac}

    def _load_state(self, state: dict[str, Any], folder: Path) -> None:
        self.s_per_mac = float(state["s_per_mac"])


class LookupPredictor(LatencyPredictor):
    """Baseline: the measured latency of each tuned workload; an unseen one gets its kind's
    median seconds-per-MAC times its MACs."""

    kind = "lookup"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lut: dict[str, float] = {}
        self.s_per_mac: dict[str, float] = {}

    def _fit_ops(self, data: WorkloadDataset) -> None:
        self.lut = data.by_key()
        work = MacsPredictor._work(data.workloads)
        ratio = data.latency_s / work
        kinds = np.array([w.kind for w in data.workloads])
        self.s_per_mac = {k: float(np.median(ratio[kinds == k])) for k in KINDS if (kinds == k).any()}
        self.s_per_mac["*"] = float(np.median(ratio))

    def _predict_ops_s(self, workloads: Sequence[Workload]) -> np.ndarray:
        work = MacsPredictor._work(workloads)
        return np.array([self.lut.get(w.key, self.s_per_mac.get(w.kind, self.s_per_mac["*"]) * x)
                         for w, x in zip(workloads, work)])

    def _state(self) -> dict[str, Any]:
        return {"lut": self.lut, "s_per_mac": self.s_per_mac}

    def _load_state(self, state: dict[str, Any], folder: Path) -> None:
        self.lut, self.s_per_mac = dict(state["lut"]), dict(state["s_per_mac"])


def op_group(w: Workload) -> str:
    """The operator family a machine change scales together: dense 1x1 convolutions, other
    dense convolutions (the stem), depthwise convolutions, and the memory-bound rest."""
    if w.kind == "conv2d":
        return "conv1x1" if w.k == 1 else "conv"
    return "dwconv" if w.kind == "dwconv" else "other"


OP_GROUPS = ("conv1x1", "conv", "dwconv", "other")


class CalibratedPredictor(LatencyPredictor):
    """Another machine's predictor carried over to this one (``tvm-ofa calibrate``).

    A workload tuned on this machine is predicted by its own best record; one whose borrowed
    schedule was timed here (``borrowed_retimed.json``) by that time; any other by the source
    predictor's value times a factor of its :func:`op_group`. The factors, one factor for the
    times taken here, and the per-network and per-task offsets are fitted on end-to-end
    measurements of a few subnets here, ridge-shrunk towards their priors (one common factor for
    the groups, the source's scale for times taken here), so that few measurements cannot swing
    what the data barely sees. Before any measurement it predicts what the source does; with fewer
    than five, the source's whole prediction (its per-network and per-task overheads included)
    times one common factor.
    """

    kind = "calibrated"
    ridge = 1.0  # weight of the pull of each group factor towards the common one

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.source_ms: dict[str, float] = {}
        self.local_ms: dict[str, float] = {}
        self.here_ms: dict[str, float] = {}  # the source's schedule, timed on this machine
        self.local_factor = 1.0  # times taken here, relative to the scale of the task sum
        self.factors: dict[str, float] = {g: 1.0 for g in OP_GROUPS}
        self.source: dict[str, Any] = {}
        self.source_offsets = (0.0, 0.0)  # the source's ms per network and per task

    @classmethod
    def from_source(cls, source: LatencyPredictor, local: WorkloadDataset | None = None,
                    info: dict[str, Any] | None = None, here_s: dict[str, float] | None = None
                    ) -> "CalibratedPredictor":
        """Start from ``source`` (its per-workload predictions over its whole space, net-level
        scale kept), this machine's own tuning records ``local`` and ``here_s`` (workload key ->
        seconds of the source's schedule timed here)."""
        pred = cls(source.space, source.net)
        keys = [w.key for w in source.table.workloads]
        pred.source_ms = dict(zip(keys, (float(v) for v in source._table_ms()[:-1])))
        pred.calibration = tuple(float(c) for c in source.calibration)
        pred.source_offsets = (float(source.calibration[1]), float(source.calibration[2]))
        pred.source = dict(info or {})
        pred.set_local(local, here_s)
        return pred

    def set_local(self, local: WorkloadDataset | None, here_s: dict[str, float] | None = None) -> None:
        """Use this machine's own best records and its timings of borrowed schedules."""
        self.local_ms = {} if local is None else {k: 1e3 * v for k, v in local.by_key().items()
                                                  if k in self.source_ms}
        self.here_ms = {k: 1e3 * v for k, v in (here_s or {}).items()
                        if k in self.source_ms and k not in self.local_ms}
        self._op_ms = None

    def recorded(self, key: str) -> bool:
        return key in self.local_ms

    def for_space(self, space: SearchSpace) -> "LatencyPredictor":
        # every workload is predicted from the source's value of it: only the source's space
        outside = sorted(set(space.resolutions) - set(self.space.resolutions))
        if outside:
            raise LatencyPredictorError(
                f"a calibrated predictor answers at its source's resolutions only "
                f"({', '.join(map(str, self.space.resolutions))}), not {', '.join(map(str, outside))}")
        return super().for_space(space)

    def _timed_here_ms(self, key: str) -> float | None:
        """The workload's time taken on this machine (own record first), before ``local_factor``."""
        return self.local_ms.get(key, self.here_ms.get(key))

    def _predict_ops_s(self, workloads: Sequence[Workload]) -> np.ndarray:
        out = []
        for w in workloads:
            here = self._timed_here_ms(w.key)
            if here is not None:
                out.append(here * self.local_factor)
            else:
                # a workload outside the source's space has no prediction: the group's mean ratio
                base = self.source_ms.get(w.key)
                if base is None:
                    raise LatencyPredictorError(f"workload {w.key} is outside the source predictor's space")
                out.append(base * self.factors[op_group(w)])
        return 1e-3 * np.asarray(out, dtype=np.float64)

    def _group_sums(self, archs: Sequence[ArchConfig]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per arch: (source ms per group over workloads not timed here, ms timed here (unscaled),
        task count, source ms over all workloads)."""
        ids = self.table.ids(archs)
        wl = self.table.workloads
        src = np.zeros((len(archs), len(OP_GROUPS)))
        loc = np.zeros(len(archs))
        whole = np.zeros(len(archs))
        for i, row in enumerate(ids):
            for j in row[row >= 0]:
                w = wl[j]
                whole[i] += self.source_ms[w.key]
                here = self._timed_here_ms(w.key)
                if here is not None:
                    loc[i] += here
                else:
                    src[i, OP_GROUPS.index(op_group(w))] += self.source_ms[w.key]
        return src, loc, (ids >= 0).sum(axis=1), whole

    def calibrate(self, measurements: Sequence[Measurement]) -> None:
        """Fit the group factors, the factor of the times taken here and the per-network/per-task
        offsets on end-to-end measurements (relative error, non-negative); with fewer than 5, one
        common factor only."""
        ms = [m for m in measurements if m.net == self.net and self.space.contains(m.arch)]
        self.meta["n_measurements"] = len(ms)
        self._op_ms = None
        self.local_factor = 1.0
        if not ms:
            return
        scale = self.calibration[0]
        y = np.array([m.latency_ms for m in ms])
        src, loc, n_ops, whole = self._group_sums([m.arch for m in ms])
        # this machine's speed relative to the source's prediction of the whole subnet. The
        # source's overheads scale with the machine too: at small inputs they are most of the
        # latency, and dropping them turns a uniform slowdown into a ranking error
        c0, c1 = self.source_offsets
        common = float(np.median(y / np.maximum(scale * whole + c0 + c1 * n_ops, 1e-9)))
        common = max(common, 1e-3)
        self.factors = {g: common for g in OP_GROUPS}
        self.calibration = (scale, common * c0, common * c1)
        if len(ms) >= 5:
            from scipy.optimize import nnls

            # unknowns: scale * factor per group, scale * factor of the times taken here, ms per
            # network, ms per task; each factor pulled towards its prior by one ridge row
            g = len(OP_GROUPS)
            a = np.concatenate([scale * src, scale * loc[:, None], np.ones((len(ms), 1)), n_ops[:, None]],
                               axis=1) / y[:, None]
            # (every measurement sees the times taken here, so their pull is a tenth of a group's)
            priors = np.array([scale * common] * g + [scale])
            lam = np.array([self.ridge] * g + [0.1 * self.ridge])
            reg = np.zeros((g + 1, a.shape[1]))
            reg[np.arange(g + 1), np.arange(g + 1)] = lam / priors
            coef, _ = nnls(np.concatenate([a, reg]), np.concatenate([np.ones(len(ms)), lam]))
            self.factors = {grp: max(float(c) / scale, 1e-3) for grp, c in zip(OP_GROUPS, coef)}
            self.local_factor = max(float(coef[g]) / scale, 1e-3)
            self.calibration = (scale, float(coef[-2]), float(coef[-1]))
        self._op_ms = None

    def fit(self, data: WorkloadDataset, measurements: Sequence[Measurement] = ()) -> "LatencyPredictor":
        raise LatencyPredictorError("a calibrated predictor is made by `tvm-ofa calibrate`, not fitted on logs")

    def _state(self) -> dict[str, Any]:
        return {"source": self.source, "factors": self.factors, "source_ms": self.source_ms,
                "local_ms": self.local_ms, "here_ms": self.here_ms, "local_factor": self.local_factor,
                "source_offsets": list(self.source_offsets)}

    def _load_state(self, state: dict[str, Any], folder: Path) -> None:
        self.source = dict(state.get("source") or {})
        self.factors = {g: float(state["factors"].get(g, 1.0)) for g in OP_GROUPS}
        self.source_ms = {k: float(v) for k, v in state["source_ms"].items()}
        self.local_ms = {k: float(v) for k, v in (state.get("local_ms") or {}).items()}
        self.here_ms = {k: float(v) for k, v in (state.get("here_ms") or {}).items()}
        self.local_factor = float(state.get("local_factor", 1.0))
        self.source_offsets = tuple(float(c) for c in state.get("source_offsets") or (0.0, 0.0))


# predictor kind -> class; the CLI and `evaluate` iterate over it
PREDICTORS: dict[str, type[LatencyPredictor]] = {
    "xgboost": XGBoostPredictor,
    "macs": MacsPredictor,
    "lookup": LookupPredictor,
    "calibrated": CalibratedPredictor,
}
# the kinds fitted from a machine's own tuning logs (`tvm-ofa latency fit` / `eval`)
FITTABLE = ("xgboost", "macs", "lookup")


def fit_predictor(kind: str, data: WorkloadDataset, measurements: Sequence[Measurement] = (),
                  space: SearchSpace | None = None, net: NetConfig | None = None) -> LatencyPredictor:
    """Fit a predictor of :data:`PREDICTORS` on a workload dataset and end-to-end measurements."""
    if kind not in FITTABLE:
        raise LatencyPredictorError(f"unknown predictor {kind!r} (choose: {', '.join(FITTABLE)})")
    return PREDICTORS[kind](space, net).fit(data, measurements)


def predictor_file(net: NetConfig, space: SearchSpace) -> str:
    """The file name of the predictor for one network and space: a CPU's folder holds one per
    network measured there (say the shipped 32-48 px supernet and the paper's 128-224 px one),
    as the tuning records they share do not say which network a subnet belongs to."""
    res = space.resolutions
    tag = f"{net.n_classes}c-w{net.width_mult:g}-r{min(res)}-{max(res)}"
    tag += "".join(f"-{k}{v}" for k, v, default in (("b", net.batch, 1), ("s", net.stem_stride, 2),
                                                    ("se", net.se_reduction, 4)) if v != default)
    return predictor_name(tag)


def _read_doc(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
        doc["kind"]
        return doc
    except (ValueError, KeyError, TypeError):
        raise LatencyPredictorError(f"{path}: not a latency predictor file (unreadable JSON); refit it") from None


def _wanted_resolutions(match: dict[str, Any]) -> tuple[int, ...]:
    space = match.get("space")
    res = space.resolutions if isinstance(space, SearchSpace) else match.get("resolutions") or ()
    return tuple(sorted(int(r) for r in res))


def _fit_score(doc: dict[str, Any], match: dict[str, Any]) -> tuple[int, int, int] | None:
    """How well the predictor in ``doc`` serves the network ``match`` describes: None when its
    network differs (classes, width, stem stride, batch, or the space's kernel, expand and depth
    choices); else (whether its fitted resolution range covers every wanted one, how many of them
    it was fitted at, minus how far they lie outside that range). Resolutions alone never exclude a
    predictor: it answers for any."""
    space = doc.get("space") or {}
    fitted = tuple(space.get("resolutions") or ())
    net = doc.get("net") or {}
    for k, v in match.items():
        if k == "space" and isinstance(v, SearchSpace):
            mine = {f: space.get(f) for f in ("ks_choices", "e_choices", "d_choices", "n_stages")}
            theirs = {f: v.to_dict().get(f) for f in mine}
            if mine != theirs:
                return None
        elif k not in ("space", "resolutions") and net.get(k) != v:
            return None
    want = _wanted_resolutions(match)
    if not want or not fitted:
        return (1, len(fitted), 0)
    covered = min(fitted) <= want[0] and want[-1] <= max(fitted)
    # outside every range: the nearest one extrapolates least
    distance = max(0, min(fitted) - want[0]) + max(0, want[-1] - max(fitted))
    return (int(covered), len(set(want) & set(fitted)), -distance)


def rank_workloads(pred: LatencyPredictor, archs: Sequence[ArchConfig]) -> tuple[list[str], np.ndarray]:
    """Workload keys of ``pred``'s space in order of the latency they carry over ``archs``
    (occurrences times predicted ms), heaviest first, and that latency."""
    ids = pred.table.ids(archs)
    ids = ids[ids >= 0].ravel()
    ms = pred._table_ms()
    weight = np.bincount(ids, weights=ms[ids], minlength=len(pred.table))
    order = [int(i) for i in np.argsort(-weight, kind="stable") if weight[i] > 0]
    return [pred.table.workloads[i].key for i in order], weight[order]


def find_predictor(folder: str | Path, match: dict[str, Any] | None = None,
                   provenance: dict[str, Any] | None = None) -> Path:
    """The predictor file in ``folder`` for the network ``match`` describes.

    Parameters
    ----------
    match : dict, optional
        Fields the predictor's network must have: any of :class:`NetConfig`'s, ``resolutions``
        or ``space`` (a :class:`SearchSpace`). Without it, the folder must hold a single predictor.
    """
    folder = Path(folder)
    target = (provenance or {}).get("target", "<target>")
    files = predictor_files(folder)
    if not files:
        raise LatencyPredictorError(f"{folder / PREDICTOR_FILE}: no latency predictor; fit one with "
                                    f"`tvm-ofa latency fit --target {target}`")
    if not match:
        if len(files) > 1:
            raise LatencyPredictorError(
                f"{folder}: latency predictors for several networks ({', '.join(p.name for p in files)}); "
                "say which with --n-classes / --resolutions")
        return files[0]
    scored = [(score, p) for p in files if (score := _fit_score(_read_doc(p), match)) is not None]
    best = max((score for score, _ in scored), default=None)
    hits = [p for score, p in scored if score == best]
    if len(hits) != 1:
        what = ", ".join(f"{k}={v.resolutions if isinstance(v, SearchSpace) else v}" for k, v in match.items())
        raise LatencyPredictorError(
            f"{folder}: {'no' if not hits else 'more than one'} latency predictor for this network ({what}); "
            f"it has {', '.join(p.name for p in files)}; fit one with `tvm-ofa latency fit --target {target}`")
    return hits[0]


def load_predictor(folder: str | Path, provenance: dict[str, Any],
                   match: dict[str, Any] | None = None) -> LatencyPredictor:
    """Load the predictor saved in ``folder``, refusing one fitted with another TVM version or
    for another target, and warning (once) when it describes another CPU.

    Parameters
    ----------
    folder : path
        The target's log folder.
    provenance : dict
        The current host's ``tvm_ofa.targets.host_provenance(cfg)``.
    match : dict, optional
        Which network's predictor, when the folder holds several (see :func:`find_predictor`).
    """
    folder = Path(folder)
    path = find_predictor(folder, match, provenance)
    doc = _read_doc(path)
    kind = doc["kind"]
    if doc.get("format") != FORMAT or kind not in PREDICTORS:
        raise LatencyPredictorError(f"{path}: unsupported predictor format/kind ({doc.get('format')}, {kind!r})")
    if doc.get("tvm_version") != provenance.get("tvm_version"):
        raise LatencyPredictorError(
            f"{path}: fitted with TVM {doc.get('tvm_version')}, this is TVM {provenance.get('tvm_version')}; "
            "tuned latencies do not carry over, refit with `tvm-ofa latency fit`")
    if doc.get("target") != provenance.get("target"):
        raise LatencyPredictorError(
            f"{path}: fitted for target {doc.get('target')!r}, not {provenance.get('target')!r}")
    if doc.get("cpu") != provenance.get("cpu"):
        tag = (str(path), str(provenance.get("cpu")))
        if tag not in _WARNED:
            _WARNED.add(tag)
            warnings.warn(f"{path}: predictor describes CPU {doc.get('cpu')}, this machine is "
                          f"{provenance.get('cpu')}: predictions may be off", CpuMismatchWarning, stacklevel=2)
    pred = PREDICTORS[kind](SearchSpace.from_dict(doc["space"]), NetConfig.from_dict(doc["net"]))
    cal = doc.get("calibration") or {}
    pred.calibration = (float(cal.get("scale", 1.0)), float(cal.get("ms_per_network", 0.0)),
                        float(cal.get("ms_per_task", 0.0)))
    pred.meta = {k: doc.get(k) for k in ("n_workloads", "n_records", "n_measurements", "date", "cpu",
                                          "cpu_features", "threads", "tvm_version", "target")}
    pred._load_state(doc.get("state") or {}, folder)
    if match and isinstance(match.get("space"), SearchSpace):
        return pred.for_space(match["space"])
    want = _wanted_resolutions(match or {})
    if want and not set(want) <= set(pred.space.resolutions):
        resolutions = tuple(sorted(set(pred.space.resolutions) | set(want)))
        return pred.for_space(SearchSpace.from_dict({**pred.space.to_dict(), "resolutions": resolutions}))
    return pred


def evaluate(pred: LatencyPredictor, measurements: Sequence[Measurement]) -> dict[str, float]:
    """Accuracy on end-to-end measurements: MAPE (%), Kendall tau, share within +-10 % and, from
    three measurements on, the median signed error (%) of the fastest and the slowest third
    (``bias_small_pct``, ``bias_large_pct``)."""
    ms = [m for m in measurements if m.net == pred.net and pred.space.contains(m.arch)]
    if not ms:
        return {"n": 0}
    return _metrics(pred.predict([m.arch for m in ms]), np.array([m.latency_ms for m in ms]))


def cross_predict(pred: LatencyPredictor, measurements: Sequence[Measurement], folds: int = 5
                  ) -> tuple[list[Measurement], np.ndarray]:
    """Each usable measurement with the latency ``pred`` predicts for it once calibrated on the
    other folds' (folds by arch id: stable across runs, independent of the held-out split). The
    per-workload model is fitted once, as it never sees end-to-end measurements; ``pred`` is left
    calibrated on all of them."""
    ms = [m for m in measurements if m.net == pred.net and pred.space.contains(m.arch)]
    fold = np.array([key_fold("cv:" + m.arch.id, folds) for m in ms], dtype=np.int64)
    p = np.zeros(len(ms))
    for k in range(folds):
        idx = np.flatnonzero(fold == k)
        if len(idx):
            pred.calibrate([m for m, f in zip(ms, fold) if f != k])
            p[idx] = pred.predict([ms[i].arch for i in idx])
    pred.calibrate(ms)
    return ms, p


def cross_validate(pred: LatencyPredictor, measurements: Sequence[Measurement], folds: int = 5
                   ) -> dict[str, float]:
    """The metrics of :func:`evaluate` over every measurement, each predicted by a calibration
    that never saw it (:func:`cross_predict`). A fixed held-out quarter of a few dozen subnets
    leaves a one-pair difference in tau to chance; this scores every measured subnet.
    ``{"n": 0}`` with fewer than two measurements per fold."""
    ms, p = cross_predict(pred, measurements, folds)
    if len(ms) < 2 * folds:
        return {"n": 0}
    return _metrics(p, np.array([m.latency_ms for m in ms]))


def repeatability(measurements: Sequence[Measurement]) -> dict[str, float]:
    """The same metrics as :func:`evaluate`, with a subnet's latency from its even-numbered
    timing passes (the fastest, as in ``Measurement.latency_ms``) as the prediction of that from
    its odd-numbered ones: two estimates over the same stretch of time (passes are taken in
    rounds), so both halves see the machine's fast and slow phases alike. This is the noise every
    predictor is scored against on this machine. With two passes, the first predicts the second.
    Only measurements timed more than once count (``{"n": 0}`` when none was)."""
    ms = [m for m in measurements if len(m.passes_ms) > 1]
    if not ms:
        return {"n": 0}
    return _metrics(np.array([min(m.passes_ms[0::2]) for m in ms]),
                    np.array([min(m.passes_ms[1::2]) for m in ms]))


def _metrics(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from scipy.stats import kendalltau

    signed = (p - y) / y
    err = np.abs(signed)
    tau = float(kendalltau(p, y).statistic) if len(y) > 1 else float("nan")
    out = {"n": len(y), "mape": float(100 * err.mean()), "kendall_tau": tau,
           "within_10pct": float((err <= 0.10).mean())}
    if len(y) >= 3:
        # a predictor can rank well and still be biased by size (per-task overheads weigh most in
        # small subnets): the median signed error of the fastest and the slowest third, apart
        order = np.argsort(y, kind="stable")
        third = len(y) // 3
        out["bias_small_pct"] = float(100 * np.median(signed[order[:third]]))
        out["bias_large_pct"] = float(100 * np.median(signed[order[-third:]]))
    return out
