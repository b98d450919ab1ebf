from __future__ import annotations

import pytest

from ddrm.config import build_config, from_dict, load_yaml, parse_overrides, to_dict
from ddrm.config.data import DataConfig
from ddrm.config.training import EvalConfig
from ddrm.errors import ConfigError


def test_overrides_are_typed_and_nested():
    assert parse_overrides(["a.b=1", "a.c=[1, 2]", "d=ml-1m", "e=true"]) == {
        "a": {"b": 1, "c": [1, 2]}, "d": "ml-1m", "e": True}


def test_layering_file_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("name: yelp\nnoise_ratio: 0.1\nread:\n  valid_ratio: 0.2\n")
    cfg = build_config(DataConfig, f, ["noise_ratio=0.3"])
    assert cfg.name == "yelp" and cfg.noise_ratio == 0.3 and cfg.read.valid_ratio == 0.2
    assert to_dict(cfg)["read"]["split"]["ratios"] == [0.7, 0.1, 0.2]


@pytest.mark.parametrize("items,match", [
    (["nam=x"], "unknown config key 'nam'"),
    (["read.bogus=1"], "unknown config key 'read.bogus'"),
    (["noise_ratio=abc"], "must be a number"),
    (["read.split.mode=dirty"], "must be one of all, clean, noisy"),
    (["noval"], "key=value"),
])
def test_bad_overrides(items, match):
    with pytest.raises(ConfigError, match=match):
        build_config(DataConfig, None, items)


def test_exponent_without_a_dot_is_a_number(tmp_path):
    """YAML 1.1 reads 5e-3 as a string; float settings accept it from --set and from files."""
    cfg = build_config(DataConfig, None, ["noise_ratio=3e-1"])
    assert cfg.noise_ratio == pytest.approx(0.3)
    f = tmp_path / "c.yaml"
    f.write_text("noise_ratio: 2E-1\n")
    assert build_config(DataConfig, f).noise_ratio == pytest.approx(0.2)
    with pytest.raises(ConfigError, match="must be a number"):
        build_config(DataConfig, None, ["noise_ratio=1e-1x"])


def test_eval_metric_must_be_computed():
    with pytest.raises(ConfigError, match="eval.metric"):
        build_config(EvalConfig, None, ["metric=recall@30"])
    with pytest.raises(ConfigError, match="must be a string"):
        build_config(EvalConfig, None, ["metric=[1]"])


def test_every_shipped_config_parses():
    from pathlib import Path

    from ddrm.runs import PretrainConfig, TrainRunConfig

    files = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))
    assert len(files) >= 15
    from ddrm.baselines import BASELINES, build
    from ddrm.tuning import load_space

    for f in files:
        if f.parent.name == "spaces":  # search spaces of 'ddrm tune'
            assert load_space(f, f.stem).params or f.stem == "mostpop", f
            continue
        raw = load_yaml(f)
        if f.parent.name == "grids":  # tuning grids of benchmarks/tune_grid.py: every model known, every config there
            from ddrm.tuning.objective import resolve_model

            for study in raw["studies"]:
                resolve_model(study["model"])
                assert "config" not in study or (f.parents[2] / study["config"]).is_file(), study
            continue
        dataset = f.parent.parent.name if f.parent.name == "tuned" else f.parent.name
        if f.name == "dataset.yaml":  # a dataset's policy for the experiments (e.g. injected noise)
            from ddrm.config.data import DataConfig

            assert set(raw) == {"data"} and build_config(DataConfig, overrides={**raw["data"], "name": dataset})
            continue
        if f.name == "baselines.yaml" or set(raw) & set(BASELINES):  # baseline hyper-parameters (hand-set or tuned)
            for name, params in raw.items():
                if name in BASELINES:
                    build(name, **params)
            assert f.name == "baselines.yaml" or raw["data"]["name"] == dataset, f
            continue
        cls = TrainRunConfig if "ddrm" in raw else PretrainConfig  # ddrm train configs have a ddrm section
        cfg = build_config(cls, f)
        assert cfg.data.name == dataset, f
        if cls is TrainRunConfig:
            assert cfg.ddrm.sampling <= cfg.ddrm.steps


def test_backend_layers_default_to_each_backends_own():
    from ddrm.config.backbones import BackendConfig

    # a config that names the backend but not its depth: MF / import / ease-factors / ials are not propagated
    extra = {"import": {"path": "x"}}
    assert {n: from_dict(BackendConfig, {"name": n, **extra.get(n, {})}).layers
            for n in ("mf", "lightgcn", "sgl", "import", "ease-factors", "ials")} == {
        "mf": 0, "lightgcn": 3, "sgl": 3, "import": 0, "ease-factors": 0, "ials": 0}
    assert from_dict(BackendConfig, {"name": "mf", "layers": 2}).layers == 2
    assert to_dict(from_dict(BackendConfig, {"name": "sgl"}))["layers"] == 3  # checkpoints store the number


def test_each_backbone_has_its_own_config_class_and_options():
    from ddrm.config import backbones as cb

    BackendConfig, MFConfig, SGLConfig = cb.BackendConfig, cb.MFConfig, cb.SGLConfig
    classes = {"mf": MFConfig, "lightgcn": cb.LightGCNConfig, "sgl": SGLConfig, "import": cb.ImportConfig,
               "ease-factors": cb.EaseFactorsConfig, "ials": cb.IALSConfig}
    for name, cls in classes.items():
        cfg = from_dict(BackendConfig, {"name": name, **({"path": "x"} if name == "import" else {})})
        assert type(cfg) is cls and cfg.name == name
        assert from_dict(BackendConfig, to_dict(cfg)) == cfg  # round trip through YAML / checkpoints
    # an option of another backbone is refused, naming it
    with pytest.raises(ConfigError, match="'ssl_weight' belongs to sgl, not to backend 'mf'"):
        from_dict(BackendConfig, {"name": "mf", "ssl_weight": 0.5})
    with pytest.raises(ConfigError, match="'ials_reg' belongs to ials"):
        from_dict(BackendConfig, {"name": "lightgcn", "ials_reg": 3.0})
    with pytest.raises(ConfigError, match="unknown backend 'mff'"):
        from_dict(BackendConfig, {"name": "mff"})
    # the flat config written before the split (every backbone's options, at their defaults) still loads
    legacy = {**to_dict(MFConfig(dim=8)), "ssl_weight": 0.1, "ssl_temperature": 0.2, "ssl_ratio": 0.1, "path": None,
              "user_key": None, "item_key": None, "user_path": None, "item_path": None, "ease_reg": 1000.0,
              "ease_norm": 1.0, "ials_reg": 1.0, "ials_alpha": 5.0, "ials_iterations": 15}
    assert from_dict(BackendConfig, legacy) == MFConfig(dim=8)
    # a plain BackendConfig built by hand becomes its backbone's class with that backbone's defaults
    sgl = cb.as_backbone_config(BackendConfig(name="sgl", dim=8))
    assert type(sgl) is SGLConfig and sgl.dim == 8 and sgl.ssl_weight == 0.1 and sgl.layers == 3
    with pytest.raises(ConfigError, match="ssl_ratio"):
        from_dict(BackendConfig, {"name": "sgl", "ssl_ratio": 1.5})
