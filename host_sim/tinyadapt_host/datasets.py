"""Data sets that are on this machine without a download (DESIGN.md "Data that is
here offline"), as numpy arrays.

    from tinyadapt_host import datasets
    x, y = datasets.load_digits()                  # (1797, 8, 8) float32 in [0, 16], int64 labels
    x, y = datasets.load_fashion_mnist("train")    # (60000, 28, 28) uint8, int64 labels
    x, y = datasets.load_fashion_mnist("test")     # (10000, 28, 28) uint8

Nothing here reaches the network: `load_digits` is the copy bundled inside the
scikit-learn wheel, Fashion-MNIST comes from Debian's `dataset-fashion-mnist`
package (its IDX files under /usr/share/datasets/fashion-mnist; the environment
variable TINYADAPT_FASHION_MNIST_DIR points elsewhere, e.g. on a machine without
apt). A missing source raises an error that names the package to install.
"""
import gzip
import os
import struct

import numpy as np

__all__ = ["load_digits", "load_fashion_mnist", "FASHION_MNIST_DIR", "FASHION_MNIST_LABELS",
           "DatasetMissing"]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_APT = "dataset-fashion-mnist"
FASHION_MNIST_LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                        "Shirt", "Sneaker", "Bag", "Ankle boot")
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class DatasetMissing(FileNotFoundError):
    """A data set's files (or the package that ships them) are not installed."""


def load_digits():
    """scikit-learn's bundled 8x8 handwritten digits: (x, y) with x float32
    (1797, 8, 8), values 0..16 (ink counts of 4x4 cells), y int64 0..9."""
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError as e:
        raise DatasetMissing("load_digits needs scikit-learn (pip install -r requirements.txt, "
                             "or pip install scikit-learn): %s" % e) from None
    d = _load()
    return d.images.astype(np.float32), d.target.astype(np.int64)


def _fashion_dir():
    return os.environ.get("TINYADAPT_FASHION_MNIST_DIR") or FASHION_MNIST_DIR


def _open(path):
    """The IDX file at path, gzipped (as Debian ships it) or not."""
    if os.path.exists(path + ".gz"):
        return gzip.open(path + ".gz", "rb")
    if os.path.exists(path):
        return open(path, "rb")
    raise DatasetMissing(
        "Fashion-MNIST file %s(.gz) not found: install the Debian package %s "
        "(sudo apt-get install %s; tools/system_deps.sh does it as root) or set "
        "TINYADAPT_FASHION_MNIST_DIR to a folder with the IDX files"
        % (path, FASHION_MNIST_APT, FASHION_MNIST_APT))


def _read_idx(path, ndim):
    """An IDX file (big-endian header: 0x0000, dtype 0x08 = uint8, ndim, dims)."""
    with _open(path) as f:
        data = f.read()
    if len(data) < 4:
        raise ValueError("%s: not an IDX file" % path)
    zero, dtype, nd = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08 or nd != ndim:
        raise ValueError("%s: IDX header says dtype 0x%02x, %d dims; expected uint8, %d dims"
                         % (path, dtype, nd, ndim))
    dims = struct.unpack(">%dI" % nd, data[4:4 + 4 * nd])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * nd)
    if body.size != int(np.prod(dims)):
        raise ValueError("%s: %d bytes of data, header says %r" % (path, body.size, dims))
    return body.reshape(dims)


def load_fashion_mnist(split="train"):
    """Fashion-MNIST from Debian's dataset-fashion-mnist: (x, y) with x uint8
    (n, 28, 28) (0 background, 255 ink) and y int64 0..9 (FASHION_MNIST_LABELS);
    split "train" (60000) or "test" (10000)."""
    if split not in _FILES:
        raise ValueError("split must be 'train' or 'test', not %r" % (split,))
    d = _fashion_dir()
    images, labels = _FILES[split]
    x = _read_idx(os.path.join(d, images), 3)
    y = _read_idx(os.path.join(d, labels), 1)
    if len(x) != len(y):
        raise ValueError("Fashion-MNIST %s: %d images, %d labels" % (split, len(x), len(y)))
    return x, y.astype(np.int64)
