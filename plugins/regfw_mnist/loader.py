"""Find the IDX files, hand them to torchvision's own dataset class, and turn the result into tensors."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import socket
import zlib
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
    plain, packed = folder / name, folder / f"{name}.gz"
    if packed.is_file() and (not plain.is_file() or packed.stat().st_mtime_ns > plain.stat().st_mtime_ns):
        return packed  # replaced after it was unpacked here: the unpacked copy is stale, unpack it again
    return plain if plain.is_file() else None


def locate(folder: Path, class_name: str) -> dict[str, Path] | None:
    """The four files in ``folder/<class_name>/raw`` (torchvision's layout) or ``folder`` itself."""
    for place in (folder / class_name / "raw", folder):
        found = {name: _one(place, name) for name in FILES}
        if all(found.values()):
            return found
    return None


def partial(folder: Path, class_name: str) -> tuple[Path, list[str]]:
    """Where in ``folder`` some of the four files are (the layout folder first) and which are
    missing there; ``(folder/<class_name>/raw, all four)`` when none is anywhere."""
    places = (folder / class_name / "raw", folder)
    counts = [(sum(_one(place, name) is not None for name in FILES), place) for place in places]
    present, place = max(counts, key=lambda c: c[0])  # a tie keeps the layout folder
    if present == 0:
        place = places[0]
    return place, [name for name in FILES if _one(place, name) is None]


def _decompress(name: str, source: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with gzip.open(source, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:  # a truncated or damaged download
        tmp.unlink(missing_ok=True)  # no half copy left under the data folder
        raise RegfwError(f"dataset '{name}': cannot decompress {source}: {' '.join(str(exc).split())[:120]}; "
                         "delete it to have it downloaded again, or replace it") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)  # atomic: a parallel run never sees half a file


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK)


def prepare(name: str, found: dict[str, Path], class_name: str) -> Path:
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
    for file, source in found.items():
        target = raw / file
        if target.is_file() and target.stat().st_mtime >= source.stat().st_mtime:
            continue
        if source.suffix == ".gz":
            _decompress(name, source, target)
        elif source.resolve() != target.resolve():
            tmp = target.with_name(f".{target.name}.{os.getpid()}.lnk")
            os.symlink(source.resolve(), tmp)
            os.replace(tmp, target)
    return raw.parent.parent


SOURCES = {"MNIST": "torchvision's MNIST mirrors", "FashionMNIST": "torchvision's Fashion-MNIST mirror"}
DEBIAN_PACKAGE = "dataset-fashion-mnist"  # Debian's package of the Fashion-MNIST files


def _missing_line(name: str, place: Path, missing: list[str], class_name: str, why: str, hint: str = "") -> str:
    """One complete line (well under the CLI's cut): exactly which files are missing, where to put
    them, where they come from, and only the hint that applies. URLs are left out: a cut one is
    worse than none."""
    files = ", ".join(f"{f}.gz" for f in missing)
    line = (f"dataset '{name}': {why}; put {files} (or unpacked) in {place}, "
            f"or point --set dataset.root=FOLDER at a folder holding all four; regfw downloads them from "
            f"{SOURCES.get(class_name, 'torchvision')} when the network allows")
    return line + hint


def _debian_hint(class_name: str, root: str | None, fallbacks) -> str:
    """Debian's package, said only where it helps: installed but bypassed by an explicit root, or
    not installed at all."""
    debian = [Path(f) for f in fallbacks if str(f).endswith("fashion-mnist")]
    if not debian:
        return ""
    if locate(debian[0], class_name) is not None:
        return f"; Debian's {DEBIAN_PACKAGE} files are in {debian[0]}: leave dataset.root unset to use them" \
            if root else ""
    return f", or install Debian's {DEBIAN_PACKAGE} package (it puts them in {debian[0]})"


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
                return prepare(name, found, class_name)
            except OSError as exc:
                raise RegfwError(f"dataset '{name}': cannot prepare the files from {folder}: "
                                 f"{exc.strerror or exc}") from None
    target = candidates[0]
    looked = " or ".join(str(c) for c in candidates)
    hint = _debian_hint(class_name, root, fallbacks)
    if not download:
        place, missing = partial(target, class_name)
        raise RegfwError(_missing_line(name, place, missing, class_name,
                                       f"{_not_found(missing, looked)} (download is off)", hint))
    created = _created_by(target / class_name / "raw")
    try:
        _download(cls, target)
    except Exception as exc:  # noqa: BLE001 - no network, a proxy, a read-only folder...
        if created is not None:  # what this attempt made, and only that: no empty MNIST/raw left behind
            shutil.rmtree(created, ignore_errors=True)
        place, missing = partial(target, class_name)
        raise RegfwError(_missing_line(name, place, missing, class_name,
                                       f"{_not_found(missing, looked)} and the download failed ({_reason(exc)})",
                                       hint)) from None
    return target


def _not_found(missing: list[str], looked: str) -> str:
    if len(missing) == len(FILES):
        return f"files not found in {looked}"
    return f"{len(missing)} of the {len(FILES)} files not found in {looked}"


def _created_by(folder: Path) -> Path | None:
    """The topmost folder above (or at) ``folder`` that does not exist yet: what making ``folder``
    would create, to remove after a failed attempt. None when ``folder`` exists."""
    topmost = None
    while not folder.exists():
        topmost, folder = folder, folder.parent
        if folder == folder.parent:
            break
    return topmost


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
