"""docs/train.md's example configuration states the real defaults."""

from __future__ import annotations

import re

import yaml

from medimp.train import PretrainConfig, load_config
from tests.conftest import REPO


def test_the_example_config_of_docs_train_md_is_the_default() -> None:
    text = (REPO / "docs" / "train.md").read_text(encoding="utf-8")
    block = re.search(r"## Configuration.*?```yaml\n(.*?)```", text, re.S).group(1)
    documented = load_config(None, yaml.safe_load(block))
    default = PretrainConfig()
    assert documented.preprocess_config() == default.preprocess_config()
    doc = documented.model_dump(mode="json", exclude={"preprocess"})
    want = default.model_dump(mode="json", exclude={"preprocess"})
    assert doc == want
