"""Images given from Python, turned into the same ImageData that the loaders return.

    data = from_python((x, y), classes=["cat", "dog"])         # tensors or numpy arrays, one split
    data = from_python(((x, y), (x_test, y_test)), classes=[...])  # a training and a test split
    data = from_python(my_dataset)                              # any torch Dataset of (image, label)
    data = from_python([(pil_image, 3), ...], classes=[...])    # or a list of such items
    data = from_python((train_dataset, test_dataset))

Images are uint8, N x 3 x H x W or N x H x W x 3 (numpy's and PIL's layout); a Dataset may
yield PIL images, uint8 tensors or float tensors in 0..1 (as ToTensor makes them), with int
labels; it is read once, here, into the in-memory tensors that training uses. One split given
alone is divided into training and test images by a fixed permutation (seed 0, every sixth image
to test, as CIFAR-10's 10,000 of 60,000), the same for every run's seed, so runs compare on the
same test images. Classes come from classes=, else the Dataset's own .classes, else the label
numbers ("0", "1", ...). Anything wrong (mixed image sizes, labels out of range, a Dataset
yielding strings) is one SettingsError line, before any run folder exists. The data's fingerprint
(sha256 of the decoded images, labels and class names) identifies them; there is no path.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..errors import SettingsError
from .dataset import MEMORY, ImageData, content_fingerprint

TEST_EVERY = 6  # one split given alone: a sixth of it is held out to test
TEST_SEED = 0


def is_python_data(data: Any) -> bool:
    """Whether data= is images given from Python (else a path, or None for the default search)."""
    return data is not None and not isinstance(data, (str, bytes)) and not hasattr(data, "__fspath__")


def from_python(data: Any, classes: Sequence[str] | None = None) -> ImageData:
    """ImageData from a pair (images, labels), a Dataset, or a pair of either (train, test)."""
    if _is_split(data):
        train, test = (_split(part, f"data[{i}]") for i, part in enumerate(data))
    else:
        (x, y), test = _split(data, "data"), None
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(TEST_SEED))
        n_test = len(y) // TEST_EVERY
        if n_test == 0:
            raise SettingsError(f"data: {len(y)} images are too few to hold out a test split (one in "
                                f"{TEST_EVERY}): give more, or a (train, test) pair of splits")
        train, test = (x[perm[n_test:]], y[perm[n_test:]]), (x[perm[:n_test]], y[perm[:n_test]])
    (train_x, train_y), (test_x, test_y) = train, test
    if train_x.shape[1:] != test_x.shape[1:]:
        raise SettingsError(f"data: the training images are {_size(train_x)} but the test images "
                            f"{_size(test_x)}: give both splits in one size")
    if len(train_y) == 0:
        raise SettingsError("data: no training images: give at least one image per class")
    names = _classes(data, classes, int(torch.cat([train_y, test_y]).max()) + 1)
    for what, y in (("training", train_y), ("test", test_y)):
        bad = (y < 0) | (y >= len(names))
        if bad.any():
            i = int(bad.nonzero()[0, 0])
            raise SettingsError(f"data: {what} label {int(y[i])} (image {i}) is out of range for "
                                f"{len(names)} classes: labels must be 0..{len(names) - 1}, one per "
                                f"class name in classes=")
    tensors = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
    return ImageData(train_x, train_y, test_x, test_y, names, None, content_fingerprint(tensors, names), "",
                     MEMORY)


def _is_split(data) -> bool:
    """(train, test): two pairs or two Datasets, not one (images, labels) pair."""
    return (isinstance(data, (tuple, list)) and len(data) == 2
            and all(isinstance(p, (tuple, list)) or _is_dataset(p) for p in data))


def _is_dataset(obj) -> bool:
    return isinstance(obj, torch.utils.data.Dataset) or (hasattr(obj, "__getitem__") and hasattr(obj, "__len__")
                                                         and not isinstance(obj, (tuple, list, np.ndarray, torch.Tensor)))


def _split(part, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    if _is_dataset(part):
        return _from_dataset(part, where)
    if isinstance(part, (tuple, list)) and len(part) == 2 and not isinstance(part[0], tuple):
        return _images(part[0], where), _labels(part[1], len(part[0]), where)
    if isinstance(part, list):  # a list of (image, label) items, read as a Dataset is
        return _from_dataset(part, where)
    raise SettingsError(f"{where}: expected a pair (images, labels) of tensors or numpy arrays, a "
                        f"torch Dataset of (image, label), or a (train, test) pair of those; got "
                        f"{type(part).__name__}")


def _size(x: torch.Tensor) -> str:
    return f"{x.shape[-2]}x{x.shape[-1]}"


def _images(x, where: str) -> torch.Tensor:
    """uint8 (N, 3, H, W), from N x 3 x H x W or N x H x W x 3 tensors or arrays."""
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise SettingsError(f"{where}: images must be a tensor or a numpy array, got {type(x).__name__}")
    x = torch.as_tensor(x)
    if x.dtype != torch.uint8:
        raise SettingsError(f"{where}: images must be uint8 (0..255), got {x.dtype}: convert them, e.g. "
                            f"(x * 255).round().to(torch.uint8) for floats in 0..1")
    if x.ndim != 4 or 3 not in (x.shape[1], x.shape[-1]):
        raise SettingsError(f"{where}: images must be N x 3 x H x W or N x H x W x 3 (RGB), got shape "
                            f"{tuple(x.shape)}")
    if x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    return x.contiguous()


def _labels(y, n: int, where: str) -> torch.Tensor:
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.ndim != 1:
        raise SettingsError(f"{where}: labels must be one integer class index per image, got "
                            f"{y.dtype} of shape {tuple(y.shape)}")
    if len(y) != n:
        raise SettingsError(f"{where}: {n} images but {len(y)} labels: give one label per image")
    return y.to(torch.int64)


def _item_image(image, i: int, where: str) -> np.ndarray:
    """One Dataset image as uint8 (3, H, W)."""
    from PIL import Image
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB")).transpose(2, 0, 1)
    if isinstance(image, (torch.Tensor, np.ndarray)):
        t = torch.as_tensor(image)
        if t.dtype.is_floating_point:  # ToTensor's 0..1 floats
            t = (t.clamp(0, 1) * 255).round().to(torch.uint8)
        if t.dtype == torch.uint8 and t.ndim == 3 and 3 in (t.shape[0], t.shape[-1]):
            return (t if t.shape[0] == 3 else t.permute(2, 0, 1)).numpy()
        raise SettingsError(f"{where}: item {i}'s image is a {t.dtype} tensor of shape {tuple(t.shape)}: "
                            f"expected 3 x H x W or H x W x 3 (uint8, or floats in 0..1)")
    raise SettingsError(f"{where}: item {i} holds a {type(image).__name__} where an image belongs: the "
                        f"Dataset must yield (PIL image or tensor, int label) pairs")


def _from_dataset(ds, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every item of a Dataset, decoded once into (uint8 images, int64 labels)."""
    images, labels = [], []
    for i in range(len(ds)):
        item = ds[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise SettingsError(f"{where}: item {i} is a {type(item).__name__}: the Dataset must yield "
                                f"(image, label) pairs")
        image, label = item
        if isinstance(label, torch.Tensor) and label.numel() == 1 and not label.dtype.is_floating_point:
            label = int(label)
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
            raise SettingsError(f"{where}: item {i}'s label is a {type(label).__name__} ({label!r}): labels "
                                f"must be int class indices (give the names with classes=)")
        arr = _item_image(image, i, where)
        if images and arr.shape != images[0].shape:
            raise SettingsError(f"{where}: item {i} is {arr.shape[1]}x{arr.shape[2]} but item 0 is "
                                f"{images[0].shape[1]}x{images[0].shape[2]}: resize the images to one size "
                                f"(e.g. in the Dataset's transform)")
        images.append(arr)
        labels.append(int(label))
    if not images:
        raise SettingsError(f"{where}: the Dataset is empty")
    return torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64)


def _classes(data, classes, n_labels: int) -> list[str]:
    if classes is None:
        parts = data if _is_split(data) else [data]
        classes = next((list(p.classes) for p in parts if _is_dataset(p) and hasattr(p, "classes")), None)
    if classes is None:
        return [str(i) for i in range(n_labels)]
    if isinstance(classes, str) or not all(isinstance(c, str) for c in classes) or len(set(classes)) != len(classes):
        raise SettingsError(f"classes= must be a list of distinct class names (strings), got {classes!r}")
    return list(classes)
