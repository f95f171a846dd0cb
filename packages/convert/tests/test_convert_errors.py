"""A checkpoint that is not what `--from` says: one line naming the file, the key and both shapes, and no
trace of OUT afterwards."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file, save_file

from rsforge.core.cli import main

from .hf_reference import build_reference


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    folder = tmp_path_factory.mktemp("released") / "instructblip"
    build_reference(folder, "hf-instructblip", "llama")
    return folder


def _copy(src, dst, edit=None):
    dst.mkdir(parents=True)
    for path in src.rglob("*"):
        if path.is_file():
            (dst / path.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            (dst / path.relative_to(src)).write_bytes(path.read_bytes())
    if edit is not None:
        state = load_file(str(dst / "model.safetensors"))
        edit(state)
        save_file(state, str(dst / "model.safetensors"))
    return dst


def _fails(capsys, tmp_path, src, fmt="hf-instructblip") -> str:
    out = tmp_path / "out"
    assert main(["convert", "--from", fmt, str(src), str(out)]) != 0
    assert not out.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_wrong_format(released, tmp_path, capsys):
    err = _fails(capsys, tmp_path, released, fmt="hf-blip2")
    assert "model_type is 'instructblip', but --from hf-blip2 reads 'blip-2'" in err


def test_missing_key(released, tmp_path, capsys):
    key = "qformer.encoder.layer.1.crossattention.output.dense.bias"
    src = _copy(released, tmp_path / "src", lambda s: s.pop(key))
    err = _fails(capsys, tmp_path, src)
    assert str(src) in err and "missing 1: qformer.encoder.layer.1.crossattention.output.dense.bias" in err


def test_unexpected_key(released, tmp_path, capsys):
    def edit(state):
        layers = "vision_model.encoder.layers"
        state[f"{layers}.9.mlp.fc1.weight"] = state[f"{layers}.0.mlp.fc1.weight"].clone()

    err = _fails(capsys, tmp_path, _copy(released, tmp_path / "src", edit))
    assert "unexpected 1: vision_model.encoder.layers.9.mlp.fc1.weight" in err


def test_shape_mismatch_names_both_shapes(released, tmp_path, capsys):
    def edit(state):
        state["language_projection.weight"] = state["language_projection.weight"][:, :16].contiguous()

    err = _fails(capsys, tmp_path, _copy(released, tmp_path / "src", edit))
    assert "language_projection.weight has shape (32, 16) in the file" in err and "has (32, 32)" in err


def test_missing_preprocessing_and_tokenizer(released, tmp_path, capsys):
    src = _copy(released, tmp_path / "src")
    (src / "preprocessor_config.json").unlink()
    assert "preprocessor_config.json: missing" in _fails(capsys, tmp_path, src)
    (src / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.5] * 3, "image_std": [0.5] * 3, "size": {"height": 32, "width": 32}, "resample": 3}))
    for path in (src / "qformer_tokenizer").iterdir():
        path.unlink()
    (src / "qformer_tokenizer").rmdir()
    assert "qformer_tokenizer: missing" in _fails(capsys, tmp_path, src)


def test_refuses_a_folder_with_files(released, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["convert", "--from", "hf-instructblip", str(released), str(out)]) != 0
    assert (out / "notes.txt").read_text() == "mine" and "not an empty folder" in capsys.readouterr().err


def test_sharded_release_and_sharded_output(tmp_path, monkeypatch):
    """A release in several safetensors shards (with its index) converts, and parts larger than a shard are
    written as `model-0000N-of-0000M.safetensors` + index, which `from_pretrained` reads back exactly."""
    import torch

    from rsforge.convert import checkpoint
    from rsforge.core.model import RSForgeModel

    reference = build_reference(tmp_path / "src", "hf-instructblip", "llama", max_shard_size="40KB")
    assert len(list((tmp_path / "src").glob("model-*.safetensors"))) > 1
    monkeypatch.setattr(checkpoint, "SHARD_BYTES", 30_000)
    assert main(["convert", "--from", "hf-instructblip", str(tmp_path / "src"), str(tmp_path / "out")]) == 0
    lm = tmp_path / "out" / "language_model"
    assert (lm / "model.safetensors.index.json").is_file() and len(list(lm.glob("model-*-of-*.safetensors"))) > 1
    model = RSForgeModel.from_pretrained(tmp_path / "out")
    ours = dict(model.decoder.lm.named_parameters())
    for name, param in reference.language_model.named_parameters():
        assert torch.equal(ours[name], param), name
