import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tvm_ofa.data import FASHION_MNIST_DIR, DatasetError, load_fashion_mnist, load_image_folder
from tvm_ofa.errors import ConfigError
from tvm_ofa.train.config import load_train_config
from tvm_ofa.train.evaluate import recalibrate_bn
from tvm_ofa.train.shrink import phase_space, train_supernet

needs_fmnist = pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(),
                                  reason="apt-get install dataset-fashion-mnist (make test does it as root)")

TINY = {
    "dataset": "fashion-mnist", "train_subset": 96, "val_fraction": 0.01, "width_mult": 0.35,
    "dropout_rate": 0.0, "space": {"resolutions": [32]}, "batch_size": 16, "max_batches_per_epoch": 3,
    "phases": [{"phase": "largest", "epochs": 1, "lr": 0.05},
               {"phase": "kernel", "epochs": 1},
               {"phase": "expand", "stage": 2, "epochs": 1}],
    "save_every": 1, "threads": 1,
}


def _config(tmp_path, **changes):
    data = {**TINY, "out_dir": str(tmp_path / "run"), **changes}
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_config_errors_name_file_and_field(tmp_path):
    path = _config(tmp_path, learning_rate=0.1)
    with pytest.raises(ConfigError, match=r"train.yaml: unknown key 'learning_rate'"):
        load_train_config(path)
    path = _config(tmp_path, phases=[{"phase": "width"}])
    with pytest.raises(ConfigError, match=r"phases\[0\].phase = 'width': allowed largest, kernel, depth, expand"):
        load_train_config(path)
    path = _config(tmp_path, batch_size="big")
    with pytest.raises(ConfigError, match="field 'batch_size' must be int"):
        load_train_config(path)
    (tmp_path / "broken.yaml").write_text("phases: [\n")
    with pytest.raises(ConfigError, match="broken.yaml: invalid YAML"):
        load_train_config(tmp_path / "broken.yaml")


def test_phase_spaces_follow_progressive_shrinking():
    from tvm_ofa import SearchSpace
    from tvm_ofa.train.config import PhaseConfig

    space = SearchSpace()
    assert phase_space(space, PhaseConfig("largest")).ks_choices == (7,)
    kernel = phase_space(space, PhaseConfig("kernel"))
    assert kernel.ks_choices == (3, 5, 7) and kernel.e_choices == (6,) and kernel.d_choices == (4,)
    assert phase_space(space, PhaseConfig("depth", stage=1)).d_choices == (3, 4)
    assert phase_space(space, PhaseConfig("depth", stage=2)).d_choices == (2, 3, 4)
    assert phase_space(space, PhaseConfig("expand", stage=1)).e_choices == (4, 6)
    assert phase_space(space, PhaseConfig("expand", stage=2)).e_choices == (3, 4, 6)


@needs_fmnist
def test_fashion_mnist_loads_offline():
    test = load_fashion_mnist("test")
    assert test.images.shape == (10000, 3, 28, 28) and test.images.dtype == np.uint8
    assert sorted(np.bincount(test.labels)) == [1000] * 10
    train, val = test.split(0.1, seed=0)
    assert len(val) == 1000 and len(train) == 9000
    assert not set(map(bytes, val.images[:50])) & set(map(bytes, train.images[:2000]))
    with pytest.raises(DatasetError, match="apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist("train", root="/nonexistent")


def test_image_folder_counts_corrupt_files_and_rejects_bad_trees(tmp_path):
    from PIL import Image

    for c in ("cat", "dog"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)).save(tmp_path / "data" / c / f"{i}.png")
    (tmp_path / "data" / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    data = load_image_folder(tmp_path / "data", size=16)
    assert data.images.shape == (6, 3, 16, 16) and data.skipped == 1 and data.classes == ("cat", "dog")
    (tmp_path / "one" / "only").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "one" / "only" / "a.png")
    with pytest.raises(DatasetError, match="only one class"):
        load_image_folder(tmp_path / "one")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images found"):
        load_image_folder(tmp_path / "empty")


def test_bn_recalibration_uses_the_given_batches(tiny_supernet, tiny_space):
    sub = tiny_supernet.extract(tiny_space.smallest())
    batches = [torch.randn(8, 3, 32, 32) * 3 + 1 for _ in range(3)]
    recalibrate_bn(sub, batches)
    stem_bn = sub.stem.bn
    x = torch.cat(batches)
    expected = sub.stem.conv(x).mean(dim=(0, 2, 3))
    assert torch.allclose(stem_bn.running_mean, expected, atol=1e-4)
    assert not sub.training


@needs_fmnist
def test_training_runs_resumes_and_matches_an_uninterrupted_run(tmp_path):
    straight = train_supernet(load_train_config(_config(tmp_path / "a")))
    assert [h["phase"] for h in straight.history] == ["largest", "kernel", "expand"]
    assert (tmp_path / "a" / "run" / "teacher.pt").is_file()

    class Stop(Exception):
        pass

    seen = []

    def interrupt(event):
        seen.append(event)
        if event["event"] == "step" and event["phase_index"] == 1 and event["done"] == 2:
            raise Stop

    cfg = load_train_config(_config(tmp_path / "b"))
    with pytest.raises(Stop):
        train_supernet(cfg, interrupt)
    resumed_events = []
    resumed = train_supernet(cfg, resumed_events.append)
    first = next(e for e in resumed_events if e["event"] == "step")
    assert (first["phase_index"], first["done"]) == (1, 3)  # continued, not restarted
    a, b = straight.supernet.state_dict(), resumed.supernet.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


@needs_fmnist
def test_training_killed_with_sigkill_resumes_where_its_last_save_left_it(tmp_path):
    """`tvm-ofa train` in a process of its own, killed with SIGKILL in its second phase: the rerun
    goes on from the last saved step (at most ``save_every`` steps lost) and ends where an
    uninterrupted run ends."""
    from conftest import kill_when

    from tvm_ofa.nn.checkpoint import read_checkpoint

    straight = train_supernet(load_train_config(_config(tmp_path / "a")))
    path = _config(tmp_path / "b")
    trainer = tmp_path / "b" / "run" / "trainer.pt"

    def in_second_phase() -> bool:
        try:
            return trainer.is_file() and read_checkpoint(trainer)["state"]["phase_index"] >= 1
        except Exception:  # being replaced right now
            return False

    kill_when([sys.executable, "-m", "tvm_ofa.cli", "train", "--config", str(path)], in_second_phase)
    killed_at = read_checkpoint(trainer)["state"]
    events = []
    resumed = train_supernet(load_train_config(path), events.append)
    first = next(e for e in events if e["event"] == "step")
    assert first["phase_index"] == killed_at["phase_index"] >= 1  # continued, not restarted
    a, b = straight.supernet.state_dict(), resumed.supernet.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_phases_not_begun_may_change_between_resumptions_begun_ones_may_not(tmp_path):
    """A long run can be given more or fewer epochs for the phases it has not reached; changing a
    phase it has begun (or the data, or the network) is refused with a one-line error."""

    class Stop(Exception):
        pass

    def interrupt(event):
        if event["event"] == "step" and event["phase_index"] == 1 and event["done"] == 2:
            raise Stop

    with pytest.raises(Stop):
        train_supernet(load_train_config(_config(tmp_path)), interrupt)
    begun = [{"phase": "largest", "epochs": 1, "lr": 0.05}, {"phase": "kernel", "epochs": 2}]
    with pytest.raises(ConfigError, match="a phase already begun"):
        train_supernet(load_train_config(_config(tmp_path, phases=begun)))
    with pytest.raises(ConfigError, match="different configuration"):
        train_supernet(load_train_config(_config(tmp_path, batch_size=8)))
    later = TINY["phases"][:2] + [{"phase": "depth", "stage": 1, "epochs": 1},
                                   {"phase": "expand", "stage": 2, "epochs": 2}]
    events = []
    result = train_supernet(load_train_config(_config(tmp_path, phases=later)), events.append)
    assert [h["phase"] for h in result.history] == ["largest", "kernel", "depth", "expand"]
    first = next(e for e in events if e["event"] == "step")
    assert (first["phase_index"], first["done"]) == (1, 3)  # continued where it stopped


@needs_fmnist
@pytest.mark.slow
def test_two_process_data_parallel_training_keeps_ranks_identical(tmp_path):
    cfg = _config(tmp_path, phases=[{"phase": "largest", "epochs": 1}, {"phase": "kernel", "epochs": 1}],
                  max_batches_per_epoch=2, save_every=0)
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", "29517",
                           str(Path(__file__).parent / "ddp_worker.py"), str(cfg), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0.keys() == r1.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    # and training moved the weights away from the initialization
    init = torch.load(tmp_path / "run" / "teacher.pt", weights_only=True)["state_dict"]
    assert any(not torch.equal(init[k], r0[k]) for k in r0 if k.endswith("weight"))


@needs_fmnist
def test_subnet_extractor_recalibrates_bn_from_the_checkpoints_dataset(tiny_supernet, tiny_space, tmp_path):
    from tvm_ofa import save_supernet
    from tvm_ofa.train.evaluate import subnet_extractor

    arch = tiny_space.smallest()
    plain = subnet_extractor(tiny_supernet, None)(arch)
    ckpt = save_supernet(tiny_supernet, tmp_path / "net.pt",
                         meta={"config": {"dataset": "fashion-mnist", "train_subset": 64}})
    calibrated = subnet_extractor(tiny_supernet, str(ckpt), calib_batches=2, batch_size=16)(arch)
    assert not calibrated.training
    assert not torch.allclose(plain.stem.bn.running_mean, calibrated.stem.bn.running_mean)
    # the supernet itself is untouched
    assert torch.equal(tiny_supernet.extract(arch).stem.bn.running_mean, plain.stem.bn.running_mean)
