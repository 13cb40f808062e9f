"""Small trained models for demos, benchmarks and tests: trained on the CPU in
seconds with fixed seeds, from the offline data sets (tinyadapt_host.datasets),
and converted to .tam with tinyadapt_host.convert_torch.

    from tinyadapt_host import demo_models as dm
    module, calib, (x_test, y_test) = dm.train_digits_mlp()      # 64-32-10 MLP, digits
    module, calib, (x_test, y_test) = dm.train_fashion_cnn()     # 2-conv CNN, Fashion-MNIST
    module, calib, (x_test, y_test) = dm.train_digits_cnn()      # conv-depthwise-pool-linear
    conv = dm.convert(module, calib, "model.tam")                # a convert_torch.Conversion
    xq = dm.quantize_inputs(conv, x_test)                        # int8, (n, input_size)

`x_test`, `calib` are float32 in PyTorch layout (digits (n, 8, 8) in [0, 1]
for the MLP, images (n, 1, H, W) in [0, 1] for the CNNs); `y_test` int64.
`calib` is the first N_CALIB training samples. The module is in eval mode and
carries its class names as `module.labels`, which `convert` stores in the
file's metadata.

Trained weights are cached under build/demo_models/ (or `cache_dir`), one file
per model keyed by a hash of the training code (the source of the functions
that build the data, the module and train it), the seed and the torch
version: a change to any of them retrains. Training runs on one torch thread
(the models are tiny; spinning OpenMP threads cost more than they give), so a
run is reproducible on one machine. `cache=False` always trains.

Fashion-MNIST comes from Debian's dataset-fashion-mnist package:
`train_fashion_cnn` raises datasets.DatasetMissing (naming the package) when it
is not installed. Needs torch (requirements.txt) for training and conversion;
`digits_split`/`fashion_split`/`quantize_inputs` need numpy only.
"""
import contextlib
import hashlib
import inspect
import os

import numpy as np

from . import datasets

__all__ = ["N_CALIB", "DIGITS_LABELS", "FASHION_LABELS", "MODELS", "CACHE_DIR",
           "digits_split", "fashion_split", "train", "digits_mlp", "fashion_cnn", "digits_cnn",
           "train_digits_mlp", "train_fashion_cnn", "train_digits_cnn", "train_model",
           "convert", "quantize_inputs"]

N_CALIB = 300                   # calibration samples: the first N_CALIB training samples
DIGITS_TRAIN = 1297             # digits: 1297 training, 500 held out (after a fixed shuffle)
DIGITS_LABELS = tuple(str(i) for i in range(10))
FASHION_LABELS = tuple(datasets.FASHION_MNIST_LABELS)
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE_DIR = os.path.join(_ROOT, "build", "demo_models")


# ------------------------------------------------------------------ data


def digits_split():
    """scikit-learn's 8x8 digits scaled to [0, 1], shuffled with a fixed seed:
    (x_train, y_train, x_test, y_test), x float32 (n, 8, 8), 1297 / 500."""
    x, y = datasets.load_digits()
    x = x / np.float32(16.0)
    perm = np.random.RandomState(0).permutation(len(x))
    x, y = x[perm], y[perm]
    return x[:DIGITS_TRAIN], y[:DIGITS_TRAIN], x[DIGITS_TRAIN:], y[DIGITS_TRAIN:]


def fashion_split(n_train=6000, n_test=2000):
    """Fashion-MNIST scaled to [0, 1]: a fixed random subset of n_train training
    images and the first n_test test images, x float32 (n, 1, 28, 28).
    datasets.DatasetMissing when the Debian package is not installed."""
    tx, ty = datasets.load_fashion_mnist("train")
    vx, vy = datasets.load_fashion_mnist("test")
    sub = np.random.RandomState(1).permutation(len(tx))[:n_train]
    xtr = (tx[sub] / np.float32(255))[:, None].astype(np.float32)
    xte = (vx[:n_test] / np.float32(255))[:, None].astype(np.float32)
    return xtr, ty[sub], xte, vy[:n_test]


# ------------------------------------------------------------------ modules


def _nn():
    try:
        import torch
        import torch.nn as nn
    except ImportError as e:
        raise ImportError("training the demo models needs torch (pip install -r "
                          "requirements.txt): %s" % e) from None
    return torch, nn


def digits_mlp():
    """Flatten -> Linear(64, 32) -> ReLU -> Linear(32, 10), for (n, 8, 8) digits."""
    _, nn = _nn()
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def fashion_cnn():
    """Two conv blocks (conv 3x3 + BatchNorm + ReLU + max pool 2) of 8 and 16
    channels and a Linear head, for (n, 1, 28, 28) images."""
    _, nn = _nn()
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 7 * 7, 10))


def digits_cnn():
    """Conv 3x3 (16 channels, 'same') + ReLU -> depthwise 3x3 (depth multiplier
    2, 'same') + ReLU6 -> max pool 2 -> Linear(512, 10), for (n, 1, 8, 8) digits:
    the shape of a TFLite CNN classifier (conv -> depthwise -> pool -> reshape ->
    fully-connected), with only TFLite SAME paddings, so that it can also be
    written as a .tflite."""
    _, nn = _nn()
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, padding=1, groups=16), nn.ReLU6(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 10))


@contextlib.contextmanager
def _one_thread(torch):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(module, x, y, epochs, lr, bs=64, seed=0):
    """Adam on cross-entropy, minibatches of bs in a seeded random order, one
    torch thread; returns the module in eval mode."""
    torch, _ = _nn()
    import torch.nn.functional as F
    with _one_thread(torch):
        g = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(module.parameters(), lr=lr)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        module.train()
        for _ in range(epochs):
            perm = torch.randperm(len(xt), generator=g)
            for i in range(0, len(xt), bs):
                idx = perm[i:i + bs]
                opt.zero_grad()
                F.cross_entropy(module(xt[idx]), yt[idx]).backward()
                opt.step()
    return module.eval()


# name -> (data split, module builder, sample transform, epochs, learning rate, labels)
MODELS = {
    "digits_mlp": (digits_split, digits_mlp, None, 20, 1e-2, DIGITS_LABELS),
    "fashion_cnn": (fashion_split, fashion_cnn, None, 2, 3e-3, FASHION_LABELS),
    "digits_cnn": (digits_split, digits_cnn, "channel", 15, 3e-3, DIGITS_LABELS),
}


def _key(name, seed):
    split, build, _, epochs, lr, labels = MODELS[name]
    torch, _ = _nn()
    h = hashlib.sha256()
    for f in (split, build, train, train_model, _add_channel):
        h.update(inspect.getsource(f).encode())
    h.update(repr((name, seed, epochs, lr, labels, torch.__version__, N_CALIB)).encode())
    return h.hexdigest()[:16]


def _add_channel(x):
    return x[:, None]


def train_model(name, seed=0, cache=True, cache_dir=None):
    """(module, calib, (x_test, y_test)) for a model of MODELS: trained with
    torch.manual_seed(seed) and minibatch order seed `seed`, or its weights read
    from the cache when the training code, seed and torch version are the same."""
    torch, _ = _nn()
    split, build, transform, epochs, lr, labels = MODELS[name]
    xtr, ytr, xte, yte = split()
    if transform == "channel":
        xtr, xte = _add_channel(xtr), _add_channel(xte)
    torch.manual_seed(seed)
    module = build()
    path = os.path.join(cache_dir or CACHE_DIR, "%s-%s.pt" % (name, _key(name, seed)))
    if cache and os.path.exists(path):
        module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        module.eval()
    else:
        train(module, xtr, ytr, epochs, lr, seed=seed)
        if cache:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = "%s.%d.tmp" % (path, os.getpid())
            torch.save(module.state_dict(), tmp)
            os.replace(tmp, path)
    module.labels = labels
    return module, xtr[:N_CALIB], (xte, yte)


def train_digits_mlp(seed=0, cache=True, cache_dir=None):
    """The 64-32-10 MLP on digits: 20 epochs, Adam 1e-2 (about 97% held out)."""
    return train_model("digits_mlp", seed, cache, cache_dir)


def train_fashion_cnn(seed=0, cache=True, cache_dir=None):
    """The 2-conv CNN on 6000 Fashion-MNIST images, 2 epochs, Adam 3e-3 (about
    85% on the test images)."""
    return train_model("fashion_cnn", seed, cache, cache_dir)


def train_digits_cnn(seed=0, cache=True, cache_dir=None):
    """The conv-depthwise-pool-linear CNN on digits as (1, 8, 8) images: 15 epochs,
    Adam 3e-3."""
    return train_model("digits_cnn", seed, cache, cache_dir)


# ------------------------------------------------------------------ conversion


def convert(module, calib, path=None, labels=None, **options):
    """convert_torch.convert_module(module, calib, None, path, labels=...) with the
    module's own `labels` unless given; other options (softmax, calibration,
    trainable, metadata) pass through. Returns the Conversion (`.model`, `.path`,
    `.quantize_input`, `.logits`, ...)."""
    from . import convert_torch
    if labels is None:
        labels = getattr(module, "labels", None)
    return convert_torch.convert_module(module, calib, None, path, labels=labels, **options)


def quantize_inputs(conv, x):
    """Float samples (PyTorch layout) -> the model's int8 input, one row of
    input_size bytes per sample in the .tam layout: what Model.predict(...,
    quantized=True) takes (`xq[i].tobytes()`)."""
    q = conv.quantize_input(np.asarray(x, dtype=np.float32))
    return np.ascontiguousarray(q.reshape(len(q), -1))
