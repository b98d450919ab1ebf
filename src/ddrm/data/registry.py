"""Named datasets: resolve a name to a local folder, downloading and verifying it when needed."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..config.data import ReadOptions, SplitOptions, SyntheticConfig
from ..errors import DataError
from ..io import atomic_path
from ..progress import progress
from .interactions import Interactions
from .readers import read_dataset
from .synthetic import make_synthetic

logger = logging.getLogger(__name__)

_GH = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: its files with sha256 digests, where to get them, and how to read them."""

    name: str
    files: dict[str, str]
    source: str
    urls: dict[str, str] = field(default_factory=dict)
    split: SplitOptions | None = None


REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "ml-1m_noisy",
            {"train_list.npy": "fd19bd8593815306dc43ab8d9c8c856c3b3fa11cad0aef0c13ecface801e2dfb",
             "valid_list.npy": "0b56d7cb7d0d057b2d5eea388a33d5c9fef4c89730712aa35d5d0a5ff0e3e1d0",
             "test_list.npy": "ba638f755595545bbd5255d06685e2427c2d2502806e7ccca07fc3d76aa4e9c6"},
            "DiffRec release (YiyanXu/DiffRec, datasets/ml-1m_noisy), as used by the DDRM reference code",
            {f: f"{_GH}/Polaris-JZ/DDRM/main/data/ml-1m/{f}" for f in ("train_list.npy", "valid_list.npy",
                                                                       "test_list.npy")},
        ),
        DatasetSpec(
            "ml-1m_clean",
            {"train_list.npy": "b39010ebf49c1159c71b5a44a2a45081f01c3f653f4221027fef2721cc0b0523",
             "valid_list.npy": "93f795d0a8439bb07e644d7e69679a2c1799684bf4b19d10bd415d80a05681b2",
             "test_list.npy": "645010f80c5a4e7b35f154587acacb596cdf3b2502531a7c71e3a8ae020c06c9"},
            "DiffRec release (YiyanXu/DiffRec, datasets/ml-1m_clean.rar, extracted)",
        ),
        DatasetSpec(
            "yelp",
            {"yelp.train.inter": "a3cd492b6a14162b2d9aa640f0e7baa8d625cb1fa170ffeed9865b5852da0765",
             "yelp.valid.inter": "b852745e2ac68d4c65b12b3bc71008fb1fe80992d109a9fd7b0c692f433462b0",
             "yelp.test.inter": "7ad500bd9fff46e124f6fedd7e0317d7780098915d7bbf6c4a4a09d465ee8ab1"},
            "HKUDS/SSLRec datasets/general_cf/sparse_yelp, converted to RecBole atomic files",
        ),
        DatasetSpec(
            "amazon-book",
            {"train.txt": "4d10106bb06a77e11df660429903c0067aeb85b86431807836b0d8b7edc30c38",
             "test.txt": "f47eff9d35fb95c07d74251a991478a84095ce6c5969b0dafcb4afe99fc716ec",
             "user_list.txt": "ae2e001d4e49fd82d4c7e25f950827a8be2fbd5c6f3a16dacb2d104edb32310e",
             "item_list.txt": "efea8518cd68e515584fdfbfca95f318b25ef551c64498c5935897c2b02e436f"},
            "KGAT release (xiangwang1223/knowledge_graph_attention_network, Data/amazon-book)",
            {f: f"{_GH}/xiangwang1223/knowledge_graph_attention_network/master/Data/amazon-book/{f}"
             for f in ("train.txt", "test.txt", "user_list.txt", "item_list.txt")},
        ),
        DatasetSpec(
            "gowalla",
            {"train.txt": "0f086326b28a56c2e6dcb81d86ee72d4ccb7eed3a8d26788392356d8f51111cc",
             "test.txt": "099a2a73924e4b754dc6efd730d764f492321b53c38eb93298850c83acf57be3",
             "user_list.txt": "5344c4d0deef610e1f148f23ad216a0db03b36f88834cd39a06786a672c5f5a1",
             "item_list.txt": "6b186f92890cc3f0c15a6dae5d6285f125a302bb8c5ea0cd9a16cf9c16347139"},
            "LightGCN release (gusye1234/LightGCN-PyTorch, data/gowalla; train.txt rebuilt from its adjacency matrix)",
        ),
        DatasetSpec(
            "ml-100k",
            {"ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff"},
            "RecBole example copy of MovieLens-100K (RUCAIBox/RecBole, recbole/dataset_example/ml-100k)",
            {"ml-100k.inter": f"{_GH}/RUCAIBox/RecBole/master/recbole/dataset_example/ml-100k/ml-100k.inter"},
            SplitOptions(method="chrono", mode="noisy"),
        ),
    )
}

SYNTHETIC = "synthetic"


def default_data_root() -> Path:
    """``$DDRM_DATA`` if set, else ``$XDG_CACHE_HOME/ddrm/data`` (``~/.cache/ddrm/data``)."""
    env = os.environ.get("DDRM_DATA")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "ddrm" / "data"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: Path, sha256: str, retries: int = 3, backoff: float = 1.0, quiet: bool = False) -> None:
    """Download ``url`` to ``dest``; the file appears under its final name only once its sha256 matches.

    Retries with exponential backoff on network errors and on a digest mismatch (the corrupted copy is removed).
    """
    last = ""
    for attempt in range(retries):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            with atomic_path(dest) as tmp:
                h = hashlib.sha256()
                with urllib.request.urlopen(url, timeout=30) as resp, open(tmp, "wb") as out:
                    total = int(resp.headers.get("Content-Length") or 0) or None
                    with progress(total=total, unit="B", unit_scale=True, desc=dest.name, quiet=quiet) as bar:
                        for block in iter(lambda: resp.read(1 << 16), b""):
                            out.write(block)
                            h.update(block)
                            bar.update(len(block))
                if h.hexdigest() != sha256:
                    raise ValueError(f"sha256 mismatch ({h.hexdigest()[:16]} != {sha256[:16]})")
            return
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            last = str(exc)
            logger.warning("download of %s failed (attempt %d/%d): %s", url, attempt + 1, retries, last)
    raise DataError(f"could not download {url} ({last}).")


def fetch(name: str, root: Path | None = None, quiet: bool = False, verify: bool = True) -> Path:
    """Local folder of the named dataset under ``root``, downloading missing files when a source is known."""
    spec = REGISTRY.get(name)
    if spec is None:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join([SYNTHETIC, *REGISTRY])}, or give a path.")
    folder = (root or default_data_root()) / name
    missing = [f for f in spec.files if not (folder / f).is_file()]
    if missing:
        if not spec.urls:
            raise DataError(f"dataset {name!r} is not under {folder} and has no direct download; get it from "
                            f"{spec.source} and put {', '.join(spec.files)} there (or pass --data-root / set DDRM_DATA).")
        for f in missing:
            try:
                download(spec.urls[f], folder / f, spec.files[f], quiet=quiet)
            except DataError as exc:
                raise DataError(f"dataset {name!r} is not under {folder} and downloading it failed ({exc}); "
                                f"put its files there yourself or point --data-root / DDRM_DATA at a folder "
                                f"that has {name}/.") from None
    elif verify:
        for f, digest in spec.files.items():
            if sha256_file(folder / f) != digest:
                logger.warning("%s: sha256 differs from the published file; using it anyway", folder / f)
    return folder


def load_dataset(
    spec: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    options: ReadOptions | None = None,
    synthetic: SyntheticConfig | None = None,
    quiet: bool = False,
) -> Interactions:
    """Load a dataset by name (``ml-1m_noisy``, ``synthetic``, ...) or by path.

    Parameters
    ----------
    spec : a registered name, ``synthetic`` (the built-in generator), or a file / folder path
    root : data root for named datasets (default: :func:`default_data_root`)
    options : reader options (format, columns, split); named datasets may set their own split defaults
    synthetic : generator settings when ``spec == "synthetic"``
    """
    text = os.fspath(spec)
    if text == SYNTHETIC:
        return make_synthetic(synthetic)
    path = Path(text)
    if path.exists():
        data = read_dataset(path, options)
    elif text in REGISTRY:
        opts = options or ReadOptions()
        reg = REGISTRY[text]
        if reg.split is not None and options is None:
            opts = ReadOptions(split=reg.split)
        data = read_dataset(fetch(text, Path(root) if root else None, quiet=quiet), opts)
    elif os.sep in text or text.startswith("."):
        raise DataError(f"{text}: no such file or folder.")
    else:
        raise DataError(f"unknown dataset {text!r}; known: {', '.join([SYNTHETIC, *REGISTRY])}, or give a path.")
    data.name = text if text in REGISTRY else data.name
    return data
