"""Image data: the offline default (Fashion-MNIST from a Debian package), user ``ImageFolder``
trees, and elastic-resolution batches.

Images are held in memory as uint8 ``N x C x H x W`` arrays at a base size; every batch is resized
on the fly to a resolution drawn from the search space, as once-for-all trains (one resolution per
batch). Grey images are repeated to three channels because the MobileNetV3 stem takes RGB.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from tvm_ofa.errors import TvmOfaError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                         "sneaker", "bag", "ankle boot")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class DatasetError(TvmOfaError):
    """A dataset that is missing, empty or unusable."""


@dataclass
class ImageDataset:
    """Images in memory.

    Attributes
    ----------
    images : np.ndarray
        ``uint8``, ``N x 3 x H x W``.
    labels : np.ndarray
        ``int64``, ``N``.
    classes : tuple of str
    skipped : int
        Files that could not be decoded (ImageFolder only).
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    name: str = "dataset"
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray, name: str | None = None) -> "ImageDataset":
        return ImageDataset(self.images[index], self.labels[index], self.classes, name or self.name)

    def split(self, val_fraction: float, seed: int = 0) -> tuple["ImageDataset", "ImageDataset"]:
        """A stratified, seeded train/val split."""
        if not 0.0 < val_fraction < 1.0:
            raise DatasetError(f"val_fraction must be between 0 and 1, got {val_fraction}")
        rng = np.random.default_rng(seed)
        val = []
        for c in range(len(self.classes)):
            idx = np.flatnonzero(self.labels == c)
            rng.shuffle(idx)
            val.append(idx[: max(1, int(round(len(idx) * val_fraction)))])
        val_idx = np.sort(np.concatenate(val))
        train_idx = np.setdiff1d(np.arange(len(self)), val_idx)
        return self.subset(train_idx, f"{self.name}:train"), self.subset(val_idx, f"{self.name}:val")


def _read_idx(path: Path, offset: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)
    except (OSError, EOFError) as err:
        raise DatasetError(f"{path}: unreadable IDX file ({err})") from None


def load_fashion_mnist(split: str = "train", root: str | Path = FASHION_MNIST_DIR) -> ImageDataset:
    """Fashion-MNIST (60,000 train / 10,000 test, 28x28 grey, 10 classes) from its gzipped IDX files.

    Parameters
    ----------
    split : {"train", "test"}
    root : path
        Folder of the Debian package ``dataset-fashion-mnist``.
    """
    root = Path(root)
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise DatasetError(f"fashion-mnist has splits 'train' and 'test', not {split!r}")
    images_path = root / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = root / f"{prefix}-labels-idx1-ubyte.gz"
    if not images_path.is_file() or not labels_path.is_file():
        raise DatasetError(f"{root}: Fashion-MNIST not found; install it with "
                           "`apt-get update && apt-get install -y dataset-fashion-mnist` (no download at run time)")
    images = _read_idx(images_path, 16).reshape(-1, 1, 28, 28)
    labels = _read_idx(labels_path, 8).astype(np.int64)
    if len(images) != len(labels):
        raise DatasetError(f"{root}: {len(images)} images but {len(labels)} labels in split {split}")
    return ImageDataset(np.repeat(images, 3, axis=1), labels, FASHION_MNIST_CLASSES, f"fashion-mnist:{split}")


def load_image_folder(root: str | Path, size: int = 64) -> ImageDataset:
    """An ``ImageFolder`` tree (one sub-folder per class), decoded once and resized to ``size``.

    Files that fail to decode are skipped and counted in ``skipped``.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [(f, c) for c, name in enumerate(classes) for f in sorted((root / name).rglob("*"))
             if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DatasetError(f"{root}: no images found (expected one sub-folder of images per class)")
    if len(classes) < 2:
        raise DatasetError(f"{root}: only one class ({classes[0]}); a classifier needs at least two")
    images, labels, skipped = [], [], 0
    for path, label in files:
        try:
            with Image.open(path) as img:
                img = img.convert("RGB").resize((size, size), Image.BILINEAR)
                images.append(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))
                labels.append(label)
        except (UnidentifiedImageError, OSError, ValueError):
            skipped += 1
    if not images:
        raise DatasetError(f"{root}: none of the {len(files)} image files could be decoded")
    return ImageDataset(np.stack(images), np.asarray(labels, dtype=np.int64), tuple(classes), str(root),
                        skipped)


def load_splits(dataset: str = "fashion-mnist", val_fraction: float = 0.1, seed: int = 0,
                train_subset: int | None = None, image_size: int = 64) -> tuple[ImageDataset, ImageDataset]:
    """Train and validation splits of a dataset (validation held out of its training split).

    Parameters
    ----------
    dataset : str
        ``"fashion-mnist"`` or an ``ImageFolder`` path (decoded at ``image_size``).
    train_subset : int, optional
        Keep a seeded random subset of this many training images.
    """
    data = load_fashion_mnist("train") if dataset == "fashion-mnist" else load_image_folder(dataset, image_size)
    train, val = data.split(val_fraction, seed)
    if train_subset is not None and train_subset < len(train):
        idx = np.random.default_rng(seed).permutation(len(train))[:train_subset]
        train = train.subset(np.sort(idx), train.name)
    return train, val


# per-dataset normalization; ImageNet's for user data
_MEAN_STD = {"fashion-mnist": (0.286, 0.353)}
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def normalization(name: str) -> tuple[Sequence[float], Sequence[float]]:
    for key, (m, s) in _MEAN_STD.items():
        if name.startswith(key):
            return (m, m, m), (s, s, s)
    return _IMAGENET


def elastic_batches(data: ImageDataset, batch_size: int, resolutions: Sequence[int], seed: int,
                    epoch: int = 0, start_batch: int = 0, augment: bool = True, shuffle: bool = True,
                    shard: tuple[int, int] = (0, 1), drop_last: bool = True,
                    max_batches: int | None = None) -> Iterator[tuple["torch.Tensor", "torch.Tensor", int]]:  # noqa: F821
    """Yield ``(images, labels, resolution)`` with one resolution per batch drawn from ``resolutions``.

    Every random draw comes from ``(seed, epoch, batch)``, so a resumed epoch continues with the
    same batches from ``start_batch`` on. Augmentation is a random crop (4 px padding at the base
    size) and a horizontal flip. ``shard = (rank, world)`` gives each distributed rank its own
    slice of every epoch (all ranks see the same resolution per batch).
    """
    import torch
    import torch.nn.functional as F

    rank, world = shard
    n_batches = batches_per_epoch(len(data), batch_size * world, drop_last, max_batches)
    order = np.random.default_rng([seed, epoch]).permutation(len(data)) if shuffle else np.arange(len(data))
    mean, std = normalization(data.name)
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    for b in range(start_batch, n_batches):
        rng = np.random.default_rng([seed, epoch, b])
        global_idx = order[b * batch_size * world:(b + 1) * batch_size * world]
        idx = global_idx[rank::world]
        x = torch.from_numpy(data.images[idx]).float().div_(255.0)
        if augment:
            x = _augment(x, rng)
        res = int(rng.choice(resolutions))
        if x.shape[-1] != res:
            x = F.interpolate(x, size=(res, res), mode="bilinear", align_corners=False)
        yield (x - mean_t) / std_t, torch.from_numpy(data.labels[idx]), res


def batches_per_epoch(n_items: int, global_batch: int, drop_last: bool = True,
                      max_batches: int | None = None) -> int:
    n = n_items // global_batch if drop_last else -(-n_items // global_batch)
    return n if max_batches is None else min(n, max_batches)


def _augment(x: "torch.Tensor", rng: np.random.Generator) -> "torch.Tensor":  # noqa: F821
    import torch
    import torch.nn.functional as F

    n, _, h, w = x.shape
    pad = 4
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy, dx = rng.integers(0, 2 * pad + 1, size=2)
    x = padded[:, :, dy:dy + h, dx:dx + w]
    flip = torch.from_numpy(rng.random(n) < 0.5)
    x[flip] = x[flip].flip(-1)
    return x
