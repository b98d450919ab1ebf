"""Configuration: every schema of ddrm in one package, and the YAML loading that validates them.

- ``loader``: ``from_dict`` / ``to_dict``, YAML load and dump, dotted ``key=value`` overrides (unknown keys and
  wrong types are one sentence naming the key);
- ``data``: ``DataConfig`` with ``ReadOptions``, ``SplitOptions``, ``SyntheticConfig``;
- ``backbones``: ``BackendConfig`` and one small class per backbone (``MFConfig``, ``LightGCNConfig``,
  ``SGLConfig``, ``ImportConfig``, ``EaseFactorsConfig``, ``IALSConfig``);
- ``training``: ``TrainConfig`` (optimisation) and ``EvalConfig`` (the validation protocol);
- ``model``: ``DDRMConfig``;
- ``runs``: ``PretrainConfig`` and ``TrainRunConfig``, the files ``ddrm pretrain`` / ``ddrm train`` read;
- ``tuning``: ``TuneOptions`` (``ddrm tune``).

The package itself only holds the loader, so that any module can import a schema without importing the others;
import the schemas from their modules (or from where ddrm re-exports them: ``ddrm.backends``, ``ddrm.model``).
Every option is described in docs/configuration.md.
"""

from .loader import build_config, deep_merge, dump_yaml, from_dict, load_yaml, nest, parse_overrides, to_dict

__all__ = ["build_config", "deep_merge", "dump_yaml", "from_dict", "load_yaml", "nest", "parse_overrides", "to_dict"]
