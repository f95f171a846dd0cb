"""The text-guided, token and classification heads inside a model: prompts, bridged tokens, labels."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from rsforge.core.batch import Batch
from rsforge.core.model import WEIGHTS_FILE, RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import parse_recipe
from rsforge.core.sample import Turn

# A narrow ResNet: maps 16/32/64 channels (strides 4/8/16), tokens of 128 from the last stage (2x2 at 64 px).
ENCODER = {"name": "timm", "model_name": "resnet18", "image_size": 64, "map_layers": [1, 2, 3],
           "model_kwargs": {"layers": [1, 1, 1, 1], "channels": [16, 32, 64, 128], "stem_width": 16}}


@pytest.fixture(scope="module")
def plugins():
    return PluginManager()


def _model(plugins, heads, bridges=()) -> RSForgeModel:
    torch.manual_seed(0)
    raw = {"name": "heads-test", "encoder": ENCODER, "bridges": list(bridges), "heads": heads}
    return RSForgeModel.from_recipe(parse_recipe(raw, plugins.registry), plugins)


def _batch(n: int = 2, texts=("show the new buildings", "show the cleared vegetation"), dates: int = 2) -> Batch:
    g = torch.Generator().manual_seed(0)
    return Batch(images=torch.rand(n, dates, 3, 64, 64, generator=g),
                 conversations=[[Turn("user", t)] for t in texts[:n]],
                 masks=(torch.rand(n, 64, 64, generator=g) > 0.8).float(),
                 mask_valid=torch.ones(n, dtype=torch.bool))


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A tiny BERT and its word-piece tokenizer, saved the way a real local text encoder would be."""
    from transformers import BertConfig, BertModel, BertTokenizer

    directory = tmp_path_factory.mktemp("bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "show", "the", "new", "buildings", "cleared",
             "vegetation", "roads", "water"]
    (directory / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizer(str(directory / "vocab.txt")).save_pretrained(directory)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    BertModel(config).save_pretrained(directory)
    return directory


def test_text_encoder_runs_once_per_distinct_prompt_and_is_not_saved(plugins, tiny_bert, tmp_path):
    model = _model(plugins, [{"name": "text_mask", "hidden": 16, "num_heads": 2, "text_encoder": str(tiny_bert)}])
    text = model.heads[0].text
    assert not any(p.requires_grad for p in text.parameters())
    embedded: list[int] = []
    text.model.register_forward_hook(lambda module, args, kwargs, out: embedded.append(len(kwargs["input_ids"])),
                                     with_kwargs=True)
    batch = _batch(2)
    losses = model(batch)
    losses.total.backward()
    assert set(losses.values()) == {"mask_text_mask", "loss"} and embedded == [2]
    model(_batch(2, texts=("show the new buildings", "show the new buildings")))  # cached: no encoder run
    model(_batch(2, texts=("show the new buildings", "roads")))  # one new prompt
    assert embedded == [2, 1] and set(text.cache) == {"show the new buildings", "show the cleared vegetation", "roads"}

    model.eval()
    images = batch.images
    a = model.mask_logits(images, ["show the new buildings"] * 2)
    b = model.mask_logits(images, ["show the cleared vegetation"] * 2)
    assert a.shape == (2, 1, 64, 64) and not torch.allclose(a, b)  # the prompt steers the mask
    assert model.predict_mask(images[:, 0], images[:, 1]).shape == (2, 64, 64)  # default prompt

    model.save_pretrained(tmp_path / "m")
    assert not any(".text.model." in k for k in load_file(str(tmp_path / "m" / WEIGHTS_FILE)))
    again = RSForgeModel.from_pretrained(tmp_path / "m", plugins=plugins)
    # Close, not equal: the reload embeds the prompt alone, the first run beside another (padding).
    assert torch.allclose(again.mask_logits(images, ["show the new buildings"] * 2), a, atol=1e-5)


def test_learned_prompt_embedding_trains_and_tells_prompts_apart(plugins):
    model = _model(plugins, [{"name": "text_mask", "hidden": 16, "num_heads": 2, "text_dim": 8}])
    losses = model(_batch(2))
    losses.total.backward()
    assert model.heads[0].text.table.weight.grad.abs().sum() > 0
    assert set(model.heads[0].text.cache) == {"show the new buildings", "show the cleared vegetation"}
    images = _batch(2).images
    buildings, water = model.mask_logits(images, ["new buildings"] * 2), model.mask_logits(images, ["water"] * 2)
    assert not torch.allclose(buildings, water)
    with pytest.raises(ValueError, match="got 1 instructions for a batch of 2"):
        model.mask_logits(images, ["water"])


def test_token_mask_reads_the_bridged_tokens_beside_the_decoder_path(plugins, tmp_path):
    heads = [{"name": "token_mask", "in_dim": 128, "hidden": 16, "use_maps": True}]
    model = _model(plugins, heads, bridges=[{"name": "difference"}])
    seen = []
    model.heads[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].tokens.shape))
    losses = model(_batch(2))
    losses.total.backward()
    assert "mask_token_mask" in losses.heads and seen == [torch.Size([2, 1, 4, 128])]  # fused date, 2x2 grid
    assert model.bridges[0].proj[0].weight.grad is not None  # the mask loss trains the bridge too
    assert model.mask_logits(_batch(2).images).shape == (2, 1, 64, 64)

    without_bridge = _model(plugins, heads)
    with pytest.raises(ValueError, match="put a bitemporal bridge"):
        without_bridge(_batch(2))


def test_classifier_trains_on_labels_and_reads_single_images(plugins):
    model = _model(plugins, [{"name": "classifier", "in_dim": 128, "num_classes": 3}])
    assert model.num_images == 1  # scene classification: one image per sample
    batch = Batch(images=torch.rand(3, 1, 3, 64, 64), conversations=[[Turn("user", "scene")]] * 3,
                  mask_valid=torch.zeros(3, dtype=torch.bool), labels=torch.tensor([2, -1, 0]))
    losses = model(batch)
    losses.total.backward()
    head = model.heads[0]
    logits = head(model.encode(batch.images), 64)
    expected = torch.nn.functional.cross_entropy(logits[[0, 2]], torch.tensor([2, 0]))  # -1: no label
    assert torch.allclose(losses.heads["class_classifier"], expected)
    assert model.class_logits(batch.images).shape == (3, 3)
    assert model(replace(batch, labels=None)).heads == {}  # no labels, no class loss
    with pytest.raises(ValueError, match="has no mask head"):
        model.mask_logits(torch.rand(1, 1, 3, 64, 64))
