from __future__ import annotations

import msgspec
import pytest

from codeintel.config import BGE_SMALL, Settings, load_settings
from codeintel.errors import ContractMismatchError, InputError


def test_contract_mismatch_names_field_and_both_values():
    other = msgspec.structs.replace(BGE_SMALL, dim=768)
    with pytest.raises(ContractMismatchError) as exc:
        BGE_SMALL.require_equal(other)
    assert (exc.value.field, exc.value.index_value, exc.value.configured_value) == ("dim", 384, 768)
    BGE_SMALL.require_equal(msgspec.structs.replace(BGE_SMALL))


def test_load_settings_from_toml(tmp_path):
    path = tmp_path / "codeintel.toml"
    path.write_text("embed_batch_size = 8\n[chunk]\nmax_chars = 1000\n[walk]\nextra_exclude = ['docs/']\n")
    settings = load_settings(path)
    assert settings.embed_batch_size == 8 and settings.chunk.max_chars == 1000 and settings.walk.extra_exclude == ("docs/",)
    assert settings.embedding == BGE_SMALL
    assert load_settings(None) == Settings() or load_settings(None).embedding == BGE_SMALL


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
