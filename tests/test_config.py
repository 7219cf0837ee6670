from __future__ import annotations

import pytest

from codeintel.config import MINILM_L6, EmbeddingContract, Settings, load_settings
from codeintel.errors import ContractMismatchError, InputError


def test_contract_mismatch_names_field_and_both_values():
    other = EmbeddingContract(model_id=MINILM_L6.model_id, dim=768)
    with pytest.raises(ContractMismatchError) as exc:
        MINILM_L6.require_equal(other)
    assert (exc.value.field, exc.value.index_value, exc.value.configured_value) == ("dim", 384, 768)
    MINILM_L6.require_equal(EmbeddingContract(model_id=MINILM_L6.model_id, dim=384))


def test_load_settings_from_toml(tmp_path):
    path = tmp_path / "codeintel.toml"
    path.write_text("embed_batch_size = 8\n[chunk]\nmax_chars = 1000\n[walk]\nextra_exclude = ['docs/']\n")
    settings = load_settings(path)
    assert settings.embed_batch_size == 8 and settings.chunk.max_chars == 1000 and settings.walk.extra_exclude == ("docs/",)
    assert settings.embedding == MINILM_L6
    assert load_settings(None) == Settings() or load_settings(None).embedding == MINILM_L6


def test_bad_settings_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_settings(tmp_path / "missing.toml")
    path = tmp_path / "bad.toml"
    path.write_text("[chunk]\nmax_chars = 'big'\n")
    with pytest.raises(InputError, match="invalid config"):
        load_settings(path)
    path.write_text("unknown_key = 1\n")
    with pytest.raises(InputError, match="invalid config"):
        load_settings(path)
