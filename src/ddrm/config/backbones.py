"""The backbones' settings: ``BackendConfig`` (what every backbone has) and one small class per backbone with the
options only it has. ``from_dict(BackendConfig, {"name": ...})`` builds the class the name picks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

from ..errors import ConfigError

LAYER_COMBINES = ("mean", "normalized_sum")
BackendName = Literal["mf", "lightgcn", "sgl", "import", "ease-factors", "ials"]


@dataclass
class BackendConfig:
    """What every backbone has: its name, width, optional graph propagation and the BPR loss (with denoising).

    Each backbone has its own subclass below, with the options only it has (``SGLConfig``, ``ImportConfig``,
    ``EaseFactorsConfig``, ``IALSConfig``; ``MFConfig`` and ``LightGCNConfig`` have no more); its code is in
    ``ddrm/backends/<name>.py``. ``from_dict(BackendConfig, {"name": ..., ...})`` builds the backbone's own class (the name picks it)
    and rejects options of other backbones; a ``BackendConfig(name=...)`` built by hand is turned into it by
    ``as_backbone_config``.

    name : ``mf`` (dot product), ``lightgcn``, ``sgl``, ``import`` (existing embeddings), ``ease-factors`` (a
        rank-``dim`` factorisation of EASE's item-item weights) or ``ials`` (iALS factors from ``implicit``)
    dim : embedding size; init_std : normal init scale of the ego embeddings (trained backbones)
    layers : LightGCN propagation layers; not given: the backbone's default (``default_layers``: 3 for ``lightgcn``
        / ``sgl``, 0 otherwise; on ``import`` / ``ease-factors`` / ``ials`` applied on top of their embeddings)
    infer_layers : propagation layers of the final embeddings (scoring, and what DDRM sees); ``None`` = ``layers``.
        Training always propagates ``layers``.
    infer_layers_choices : if not empty, after training the depth among these with the best validation metric
        becomes ``infer_layers`` (selection on validation only; the validation scores are kept in the run's JSON)
    layer_combine : ``mean`` of the layers (LightGCN) or ``normalized_sum`` (each layer L2-normalised per row, the
        layers summed: how the DDRM reference code propagates its SGL backbone)
    reg : L2 weight on the batch's ego embeddings (LightGCN convention: 0.5 * sum of squares / batch)
    denoise : denoising training of the BPR loss (Wang et al., WSDM 2021, adapted to BPR triples):
        ``none``; ``tce`` (truncated: drop the ``drop_rate`` fraction of triples with the largest loss in each batch,
        the rate rising linearly from 0 to ``tce_max_rate`` over ``tce_warmup`` steps); ``rce`` (reweighted: each
        triple's loss times ``sigmoid(s_pos) ** rce_beta``, without gradient through the weight)
    """

    name: BackendName = "lightgcn"
    dim: int = 64
    layers: int | None = None  # type: ignore[assignment]  # an int after __post_init__
    layer_combine: Literal["mean", "normalized_sum"] = "mean"
    infer_layers: int | None = None
    infer_layers_choices: list[int] = field(default_factory=list)
    reg: float = 1e-4
    init_std: float = 0.1
    denoise: Literal["none", "tce", "rce"] = "none"
    tce_max_rate: float = 0.2
    tce_warmup: int = 10000
    rce_beta: float = 0.1

    default_layers: ClassVar[dict[str, int]] = {"lightgcn": 3, "sgl": 3}

    def __post_init__(self) -> None:
        if self.layers is None:
            self.layers = self.default_layers.get(self.name, 0)

    @classmethod
    def resolve_variant(cls, data: Mapping[str, Any]) -> tuple[type[BackendConfig], dict[str, Any]]:
        """The backbone's own config class for ``data["name"]`` and the keys to build it from (``from_dict``'s
        hook). Keys that only ddrm's earlier one-class config had (every backbone's options in one flat dict, as in
        checkpoints and run folders written before the split), at their old defaults, are dropped."""
        from ..backends.registry import backbone, backbones

        name = data.get("name", cls.name)
        target = backbone(name).config
        known = {f.name for f in fields(target)}
        kept = {k: v for k, v in data.items() if k in known or k not in LEGACY_DEFAULTS or LEGACY_DEFAULTS[k] != v}
        for key in sorted(set(kept) - known):
            owners = [n for n, b in backbones().items() if key in {f.name for f in fields(b.config)}]
            if owners:
                raise ConfigError(f"backend option {key!r} belongs to {' / '.join(owners)}, not to backend {name!r} "
                                  f"(its options: {', '.join(sorted(known))}).")
        return target, kept

    def validate(self) -> None:
        if not 0 <= self.tce_max_rate < 1 or self.tce_warmup < 1 or self.rce_beta < 0:
            raise ConfigError("backend needs 0 <= tce_max_rate < 1, tce_warmup >= 1 and rce_beta >= 0.")
        if self.layer_combine not in LAYER_COMBINES:
            raise ConfigError(f"backend.layer_combine must be one of {', '.join(LAYER_COMBINES)}, "
                              f"not {self.layer_combine!r}.")
        if self.dim < 1 or self.layers < 0 or self.reg < 0 or self.init_std <= 0:
            raise ConfigError("backend needs dim >= 1, layers >= 0, reg >= 0 and init_std > 0.")
        if (self.infer_layers is not None and self.infer_layers < 0) or any(k < 0 for k in self.infer_layers_choices):
            raise ConfigError("backend.infer_layers and backend.infer_layers_choices must be >= 0.")


# the backbone-specific options as ddrm's one flat backend config had them (before each backbone got its own
# class), with their defaults: checkpoints and run folders written then list them all
LEGACY_DEFAULTS: dict[str, Any] = {
    "ssl_weight": 0.1, "ssl_temperature": 0.2, "ssl_ratio": 0.1, "path": None, "user_key": None, "item_key": None,
    "user_path": None, "item_path": None, "ease_reg": 1000.0, "ease_norm": 1.0, "ials_reg": 1.0, "ials_alpha": 5.0,
    "ials_iterations": 15,
}


def as_backbone_config(cfg: BackendConfig) -> BackendConfig:
    """``cfg`` as its backbone's own config class (a plain ``BackendConfig(name="sgl")`` becomes an ``SGLConfig``
    with SGL's defaults); already one: returned as is."""
    from ..backends.registry import backbone

    target = backbone(cfg.name).config
    if type(cfg) is target:
        return cfg
    return target(**{f.name: getattr(cfg, f.name) for f in fields(BackendConfig)})


@dataclass
class MFConfig(BackendConfig):
    """MF has only the common options (``BackendConfig``); ``layers`` defaults to 0 (no graph)."""

    name: BackendName = "mf"


@dataclass
class LightGCNConfig(BackendConfig):
    """LightGCN has only the common options (``BackendConfig``); ``layers`` defaults to 3."""

    name: BackendName = "lightgcn"


@dataclass
class SGLConfig(BackendConfig):
    """SGL's options on top of ``BackendConfig`` (``layers`` defaults to 3).

    ssl_weight : weight of the InfoNCE loss (0 = LightGCN); ssl_temperature : its temperature
    ssl_ratio : edge-dropout ratio of each view
    """

    name: BackendName = "sgl"
    ssl_weight: float = 0.1
    ssl_temperature: float = 0.2
    ssl_ratio: float = 0.1

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.ssl_ratio < 1 or self.ssl_temperature <= 0 or self.ssl_weight < 0:
            raise ConfigError("backend needs 0 <= ssl_ratio < 1, ssl_temperature > 0 and ssl_weight >= 0.")


@dataclass
class ImportConfig(BackendConfig):
    """Where the embeddings come from, on top of ``BackendConfig`` (``dim`` follows the file).

    path : a torch state dict (``.pt``), an ``.npz`` archive or a ddrm backend checkpoint
    user_key, item_key : the tensors to take from ``path`` (default: guessed from names and shapes)
    user_path, item_path : two ``.npy`` matrices instead of ``path``
    """

    name: BackendName = "import"
    path: str | None = None
    user_key: str | None = None
    item_key: str | None = None
    user_path: str | None = None
    item_path: str | None = None

    def validate(self) -> None:
        super().validate()
        if not (self.path or (self.user_path and self.item_path)):
            raise ConfigError("backend 'import' needs backend.path, or backend.user_path and backend.item_path.")


@dataclass
class EaseFactorsConfig(BackendConfig):
    """EASE's options on top of ``BackendConfig`` (``dim`` is the rank kept).

    ease_reg : EASE's L2 weight; ease_norm : the mean L2 norm of the item embeddings
    """

    name: BackendName = "ease-factors"
    ease_reg: float = 1000.0
    ease_norm: float = 1.0

    def validate(self) -> None:
        super().validate()
        if self.ease_reg <= 0 or self.ease_norm <= 0:
            raise ConfigError("backend needs ease_reg > 0 and ease_norm > 0.")


@dataclass
class IALSConfig(BackendConfig):
    """iALS's options on top of ``BackendConfig`` (``dim`` is its number of factors).

    ials_reg : its L2 weight; ials_alpha : its confidence weight; ials_iterations : ALS sweeps
    """

    name: BackendName = "ials"
    ials_reg: float = 1.0
    ials_alpha: float = 5.0
    ials_iterations: int = 15

    def validate(self) -> None:
        super().validate()
        if self.ials_reg < 0 or self.ials_alpha <= 0 or self.ials_iterations < 1:
            raise ConfigError("backend needs ials_reg >= 0, ials_alpha > 0 and ials_iterations >= 1.")
