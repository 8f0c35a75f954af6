"""``mnist``: ten-class MNIST with a one-hidden-layer MLP (document 003, part 3), and the
``mnist`` and ``fashion-mnist`` datasets.

Recipe: ``torchvision.datasets.MNIST``, 60000 train / 10000 test images of 28×28, scaled to 0..1
(what ``ToTensor()`` does) and flattened to 784 features; model 784 → 256 → 10 with ReLU (the
shared ``mlp`` model, ``hidden=[256]``), weights N(0, 0.01), biases zero; ``CrossEntropyLoss``
(loss ``cross-entropy``, long targets, task ``multiclass``); shuffled mini-batches of 32; 20 epochs;
train and test loss and accuracy per epoch.

How the hand-written parts map onto torch components:
- The document's step ``p -= lr * grad / batch_size`` with lr 0.01 on a mean loss is SGD with
  lr 0.01 / 32 = 3.125e-4, the default here.

What regfw fixes:
- The document's parameter list is ``[W1, b2, W2, b2]``: b1 is never updated. Here every parameter
  of the model is trained.

Loading. The datasets use the real ``torchvision.datasets.MNIST`` / ``FashionMNIST`` classes, once:
their ``data`` and ``targets`` tensors become float features (/255, flattened) and long labels, and
the engine moves them to the device a single time; no image goes through PIL, per sample or per epoch.
``dataset.root`` names a folder holding the four IDX files (``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each plain or
``.gz``), either in torchvision's layout ``<root>/MNIST/raw/`` (``FashionMNIST/raw`` for
fashion-mnist) or directly in ``<root>``. Without ``root`` regfw looks in its data folder
(``$REGFW_DATA``, else ``$XDG_CACHE_HOME/regfw/data``, else ``~/.cache/regfw/data``), and for
fashion-mnist also where Debian's ``dataset-fashion-mnist`` package installs the files
(``/usr/share/datasets/fashion-mnist``). Files outside torchvision's layout, or compressed in a
read-only folder, are prepared once (decompressed or linked) under the data folder's ``prepared/``.
Only when no folder holds the files does regfw ask torchvision to download them (``download=true``,
the default) into ``root`` or the data folder; if that fails, one line says which files to put where.
``train_limit`` / ``test_limit`` keep only the first N images of a split (quick runs).
"""

from regfw import Param, hookimpl

DIMS = {"in_features": 28 * 28, "out_features": 10, "task": "multiclass"}
LIMIT = Param(None, type=int, min=1, help="use only the first N images (default: all)")


def _params(extra_help: str) -> dict:
    return {
        "root": Param(None, type=str, help="folder with the IDX files" + extra_help),
        "download": Param(True, help="download when the files are found nowhere"),
        "train_limit": LIMIT,
        "test_limit": LIMIT,
    }


def _dataset(name, class_name, fallbacks=()):
    def factory(generator, root, download, train_limit, test_limit):
        from regfw_mnist.loader import load

        return load(name, class_name, root, download, train_limit, test_limit, fallbacks)

    return factory


DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"


@hookimpl
def register_datasets(register):
    register("mnist", _dataset("mnist", "MNIST"),
             description="MNIST digits via torchvision.datasets.MNIST: 784 features in 0..1, 10 classes",
             params=_params(" (default: the regfw data folder)"), dims=lambda p: dict(DIMS))
    register("fashion-mnist", _dataset("fashion-mnist", "FashionMNIST", (DEBIAN_FASHION,)),
             description="Fashion-MNIST via torchvision.datasets.FashionMNIST: 784 features in 0..1, 10 classes",
             params=_params(" (default: the regfw data folder, then Debian's dataset-fashion-mnist)"),
             dims=lambda p: dict(DIMS))


@hookimpl
def register_experiments(register):
    register("mnist",
             description="MNIST with a 784-256-10 ReLU MLP, cross-entropy, mini-batch SGD (document 003)",
             dataset="mnist", model=("mlp", {"hidden": [256], "init_std": 0.01}), loss="cross-entropy",
             optimizer=("sgd", {"lr": 0.01 / 32}),
             train={"epochs": 20, "batch_size": 32, "shuffle": True, "metrics": ["accuracy"]})
