"""Find the IDX files, hand them to torchvision's own dataset class, and turn the result into tensors."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import socket
from pathlib import Path

from regfw.errors import RegfwError

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DOWNLOAD_TIMEOUT = 30.0  # seconds per connection: no network must not mean a hang


def data_home() -> Path:
    """regfw's data folder: $REGFW_DATA, else $XDG_CACHE_HOME/regfw/data, else ~/.cache/regfw/data."""
    if os.environ.get("REGFW_DATA"):
        return Path(os.environ["REGFW_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "regfw" / "data"


def _one(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def locate(folder: Path, class_name: str) -> dict[str, Path] | None:
    """The four files in ``folder/<class_name>/raw`` (torchvision's layout) or ``folder`` itself."""
    for place in (folder / class_name / "raw", folder):
        found = {name: _one(place, name) for name in FILES}
        if all(found.values()):
            return found
    return None


def _decompress(source: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with gzip.open(source, "rb") as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, length=1 << 20)
    os.replace(tmp, target)  # atomic: a parallel run never sees half a file


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK)


def prepare(found: dict[str, Path], class_name: str) -> Path:
    """A root under which torchvision finds ``<class_name>/raw/<file>`` uncompressed."""
    places = {path.parent for path in found.values()}
    place = places.pop() if len(places) == 1 else None
    in_layout = place is not None and place.name == "raw" and place.parent.name == class_name
    if in_layout and all(p.suffix != ".gz" for p in found.values()):
        return place.parent.parent
    if in_layout and _writable(place):
        raw = place  # what torchvision's own download would do: extract next to the .gz
    else:
        key = hashlib.sha1(str(sorted(str(p.resolve()) for p in found.values())).encode()).hexdigest()[:12]
        raw = data_home() / "prepared" / f"{class_name}-{key}" / class_name / "raw"
        raw.mkdir(parents=True, exist_ok=True)
    for name, source in found.items():
        target = raw / name
        if target.is_file() and target.stat().st_mtime >= source.stat().st_mtime:
            continue
        if source.suffix == ".gz":
            _decompress(source, target)
        elif source.resolve() != target.resolve():
            tmp = target.with_name(f".{target.name}.{os.getpid()}.lnk")
            os.symlink(source.resolve(), tmp)
            os.replace(tmp, target)
    return raw.parent.parent


SOURCES = {"MNIST": "torchvision's MNIST mirrors", "FashionMNIST": "torchvision's Fashion-MNIST mirror"}
DEBIAN_PACKAGE = "dataset-fashion-mnist"  # Debian's package of the Fashion-MNIST files


def _missing_line(name: str, folder: Path, class_name: str, why: str, fallbacks=()) -> str:
    """One complete line (well under the CLI's cut): what is missing, where to put it, where it
    comes from. URLs are left out: a cut one is worse than none."""
    files = ", ".join(f"{f}.gz" for f in FILES)
    line = (f"dataset '{name}': {why}; put {files} (or unpacked) in {folder / class_name / 'raw'}, "
            f"or point --set dataset.root=FOLDER at a folder holding them; regfw downloads them from "
            f"{SOURCES.get(class_name, 'torchvision')} when the network allows")
    if any(str(f).endswith("fashion-mnist") for f in fallbacks):
        line += f", and finds Debian's {DEBIAN_PACKAGE} package in {fallbacks[0]}"
    return line


def _reason(exc: Exception) -> str:
    """Why a download failed, short: URLs shown as their host, cut at a word."""
    from urllib.parse import urlparse

    seen = {id(exc)}
    while (exc.__cause__ or exc.__context__) is not None and id(exc.__cause__ or exc.__context__) not in seen:
        exc = exc.__cause__ or exc.__context__  # the root cause: "Connection refused", not the retry story
        seen.add(id(exc))
    text = re.sub(r"https?://\S+", lambda m: urlparse(m.group(0)).netloc or "a URL", " ".join(str(exc).split()))
    text = text.rsplit(" got: ", 1)[-1]  # torchvision: "Error downloading F: Tried URL got: <the error>"
    if len(text) > 80:
        text = text[:80].rsplit(" ", 1)[0] + " ..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _download(cls, folder: Path) -> None:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
    try:
        cls(str(folder), train=True, download=True)
    finally:
        socket.setdefaulttimeout(previous)


def find_root(name: str, class_name: str, root: str | None, download: bool, fallbacks=(), cls=None) -> Path:
    """The root to give torchvision: an existing copy of the files, else a fresh download."""
    candidates = [Path(root).expanduser()] if root else [data_home(), *map(Path, fallbacks)]
    for folder in candidates:
        found = locate(folder, class_name)
        if found is not None:
            try:
                return prepare(found, class_name)
            except OSError as exc:
                raise RegfwError(f"dataset '{name}': cannot prepare the files from {folder}: "
                                 f"{exc.strerror or exc}") from None
    target = candidates[0]
    looked = " or ".join(str(c) for c in candidates)
    if not download:
        raise RegfwError(_missing_line(name, target, class_name, f"files not found in {looked} (download is off)",
                                       fallbacks))
    try:
        _download(cls, target)
    except Exception as exc:  # noqa: BLE001 - no network, a proxy, a read-only folder...
        raise RegfwError(_missing_line(name, target, class_name, f"files not found in {looked} and the download "
                                       f"failed ({_reason(exc)})", fallbacks)) from None
    return target


def load(name: str, class_name: str, root: str | None, download: bool, train_limit, test_limit, fallbacks=()):
    """Data for one of torchvision's MNIST-format datasets: float (n, 784) in 0..1, long labels."""
    import torchvision.datasets

    from regfw.data import Data

    cls = getattr(torchvision.datasets, class_name)
    folder = find_root(name, class_name, root, download, fallbacks, cls)
    try:
        train = cls(str(folder), train=True, download=False)
        test = cls(str(folder), train=False, download=False)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise RegfwError(f"dataset '{name}': cannot read the IDX files under {folder / class_name / 'raw'} "
                         f"({type(exc).__name__}: {reason})") from None

    def tensors(split, limit):
        images, labels = split.data, split.targets
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        return images.reshape(len(images), -1).float().div_(255.0), labels.long()

    x_train, y_train = tensors(train, train_limit)
    x_test, y_test = tensors(test, test_limit)
    return Data(x_train, y_train, x_test, y_test, task="multiclass")
