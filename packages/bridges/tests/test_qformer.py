import zlib
from pathlib import Path

import pytest
import torch

from rsforge.bridges.configs import QFormerConfig
from rsforge.bridges.qformer import QFormer
from rsforge.core.interfaces import VisualFeatures
from rsforge.core.text import hashed_word_ids

pytest.importorskip("transformers")  # the `qformer` extra of rsforge-bridges
save_file = pytest.importorskip("safetensors.torch").save_file

TINY = {"in_dim": 12, "out_dim": 20, "num_queries": 4, "hidden_size": 16, "num_layers": 4, "num_heads": 2,
        "intermediate_size": 32, "vocab_size": 97, "max_instruction_tokens": 16, "max_position_embeddings": 24}


def _bridge(seed: int = 0, **kw) -> QFormer:
    torch.manual_seed(seed)
    return QFormer(QFormerConfig(name="qformer", **{**TINY, **kw})).eval()


def _features(batch: int = 2, t: int = 2, seed: int = 1) -> VisualFeatures:
    g = torch.Generator().manual_seed(seed)
    return VisualFeatures(torch.randn(batch, t, 6, 12, generator=g), [torch.randn(batch, t, 3, 2, 2, generator=g)])


def test_only_the_queries_leave_projected_to_out_dim():
    bridge = _bridge()
    features = _features()
    for instructions in (["a", "b"], ["describe every change between the two images in detail", "count"]):
        out = bridge(features, instructions)
        assert out.tokens.shape == (2, 1, 4, 20)  # num_queries tokens whatever the instruction's length
        assert out.maps[0] is features.maps[0]
    # The output is exactly the projection of the query positions of the Q-Former's last hidden state.
    ids, mask = bridge.tokenize(["a", "b"])
    queries = bridge.query_tokens.expand(2, -1, -1)
    hidden = bridge.qformer(input_ids=ids, attention_mask=torch.cat([torch.ones(2, 4, dtype=torch.long), mask], 1),
                            query_embeds=queries,
                            encoder_hidden_states=bridge.memory_norm(features.tokens.flatten(1, 2))).last_hidden_state
    assert hidden.shape[1] == 4 + ids.shape[1]
    assert torch.allclose(bridge(features, ["a", "b"]).tokens[:, 0], bridge.proj(hidden[:, :4]), atol=1e-6)


def test_the_instruction_steers_the_queries():
    bridge = _bridge()
    features = _features()
    a = bridge(features, ["what changed?", "what changed?"]).tokens
    b = bridge(features, ["how many buildings appeared?", "what changed?"]).tokens
    assert not torch.allclose(a[0], b[0], atol=1e-4)
    assert torch.allclose(a[1], b[1], atol=1e-5)  # each sample reads its own instruction
    # Padding is masked: a short instruction reads the same next to a long one as next to itself.
    short = bridge(features, ["what changed?", "a much longer instruction about the changes"]).tokens[0]
    assert torch.allclose(short, a[0], atol=1e-5)
    # No instruction is the empty instruction.
    assert torch.allclose(bridge(features).tokens, bridge(features, ["", ""]).tokens)


def test_the_image_steers_the_queries_and_every_image_of_a_sample_is_read():
    bridge = _bridge()
    features = _features()
    changed = features.tokens.clone()
    changed[:, 1] += torch.randn(changed[:, 1].shape, generator=torch.Generator().manual_seed(2))  # date 2 only
    assert not torch.allclose(bridge(features, ["x", "x"]).tokens,
                              bridge(VisualFeatures(changed), ["x", "x"]).tokens, atol=1e-4)


def test_cross_attention_only_every_cross_attention_frequency_layers():
    bridge = _bridge(num_layers=4, cross_attention_frequency=2)
    crossing = [i for i, layer in enumerate(bridge.qformer.encoder.layer) if hasattr(layer, "crossattention")]
    assert crossing == [0, 2]
    for i in crossing:  # keys and values read the image width, queries the Q-Former width
        attention = bridge.qformer.encoder.layer[i].crossattention.attention
        assert attention.key.in_features == 12 and attention.query.in_features == 16
    every = _bridge(num_layers=3, cross_attention_frequency=1)
    assert all(hasattr(layer, "crossattention") for layer in every.qformer.encoder.layer)


def test_gradients_reach_queries_qformer_and_projection():
    bridge = _bridge().train()
    bridge(_features(), ["what changed?", "count"]).tokens.square().mean().backward()
    assert bridge.query_tokens.grad.abs().sum() > 0 and bridge.proj.weight.grad.abs().sum() > 0
    assert bridge.qformer.encoder.layer[0].crossattention.attention.key.weight.grad.abs().sum() > 0
    assert bridge.qformer.embeddings.word_embeddings.weight.grad.abs().sum() > 0  # the instruction trains too


def test_hashed_word_ids_pad_with_zero_and_hash_words_with_crc32():
    ids, mask = hashed_word_ids(["New Buildings, here!", "", "a b c d e"], buckets=50, max_len=4)
    assert ids.shape == mask.shape == (3, 4)
    expected = [zlib.crc32(w.encode()) % 49 + 1 for w in ("new", "buildings", "here")]
    assert ids[0].tolist() == [*expected, 0] and mask[0].tolist() == [1, 1, 1, 0]
    assert ids[1].tolist() == [0, 0, 0, 0] and mask[1].sum() == 0
    assert mask[2].tolist() == [1, 1, 1, 1]  # truncated to max_len
    assert ((ids >= 0) & (ids < 50)).all() and (ids[mask.bool()] > 0).all()
    assert hashed_word_ids([""], 50, 4)[0].shape == (1, 1)


def _bert_tokenizer_dir(tmp_path: Path) -> Path:
    """A BERT (WordPiece) tokenizer with an 11-word vocabulary, saved like bert-base-uncased is."""
    from transformers import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "what", "changed", "how", "many", "buildings", "?"]
    BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(tmp_path / "tok")
    return tmp_path / "tok"


def test_a_bert_tokenizer_reads_the_instruction(tmp_path):
    source = str(_bert_tokenizer_dir(tmp_path))
    bridge = _bridge(tokenizer=source, vocab_size=16)
    ids, mask = bridge.tokenize(["what changed?", "how many buildings?"])
    assert ids[0].tolist()[:5] == [2, 5, 6, 10, 3] and mask[0].tolist() == [1, 1, 1, 1, 1, 0]
    features = _features()
    assert not torch.allclose(bridge(features, ["what changed?"] * 2).tokens,
                              bridge(features, ["how many buildings?"] * 2).tokens, atol=1e-4)
    with pytest.raises(ValueError, match="has 11 tokens, more than vocab_size=8"):
        _bridge(tokenizer=source, vocab_size=8)


def test_nothing_is_read_from_disk_on_the_meta_device():
    with torch.device("meta"):
        bridge = QFormer(QFormerConfig(name="qformer", **TINY, tokenizer="/no/such/tokenizer", weights="/no/such.st"))
    assert bridge.tokenizer is None and bridge.query_tokens.is_meta
    with pytest.raises(OSError):
        _bridge(tokenizer="/no/such/tokenizer")
    with pytest.raises(FileNotFoundError, match=r"no safetensors file at /no/such\.safetensors"):
        _bridge(weights="/no/such.safetensors")


# Released checkpoints, written by the test in both key layouts from a bridge's own weights. The renames
# are the published layouts: Hugging Face InstructBLIP names the projection `language_projection` and the
# ViT's last norm `vision_model.post_layernorm`; LAVIS keeps BERT's names under `Qformer.bert`.
def _hf_key(key: str) -> str:
    for ours, theirs in (("proj.", "language_projection."), ("memory_norm.", "vision_model.post_layernorm.")):
        if key.startswith(ours):
            return theirs + key.removeprefix(ours)
    return key


def _lavis_key(key: str) -> str:
    if key.startswith("qformer."):
        key = "Qformer.bert." + key.removeprefix("qformer.")
        key = key.replace(".attention.attention.", ".attention.self.").replace(".crossattention.attention.",
                                                                                ".crossattention.self.")
        return key.replace("embeddings.layernorm.", "embeddings.LayerNorm.")
    return {"proj.weight": "llm_proj.weight", "proj.bias": "llm_proj.bias", "memory_norm.weight": "ln_vision.weight",
            "memory_norm.bias": "ln_vision.bias"}.get(key, key)


OTHER_PARTS = {  # tensors of the ViT, the LLM and BLIP-2 pre-training heads: never loaded
    "hf": {"vision_model.encoder.layers.0.mlp.fc1.weight": torch.ones(3, 3), "language_model.lm_head.weight":
           torch.ones(2, 2), "qformer.embeddings.position_ids": torch.arange(24)[None]},
    "lavis": {"visual_encoder.blocks.0.mlp.fc1.weight": torch.ones(3, 3), "Qformer.cls.predictions.bias":
              torch.ones(5), "Qformer.bert.embeddings.position_ids": torch.arange(24)[None], "temp": torch.ones(())},
}


@pytest.mark.parametrize("layout", ["hf", "lavis"])
def test_released_weights_load_in_both_key_layouts(tmp_path, layout):
    source = _bridge(seed=3)
    rename = _hf_key if layout == "hf" else _lavis_key
    tensors = {rename(k): v.clone().to(torch.float16 if k.startswith("qformer.") else torch.float32)
               for k, v in source.state_dict().items()}
    assert len(tensors) == len(source.state_dict())
    save_file({**tensors, **OTHER_PARTS[layout]}, str(tmp_path / "model.safetensors"))

    loaded = _bridge(seed=4, weights=str(tmp_path / "model.safetensors"))
    fresh = _bridge(seed=4)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value.half().float() if key.startswith("qformer.") else value)
    features = _features()
    assert not torch.allclose(fresh(features, ["a", "b"]).tokens, loaded(features, ["a", "b"]).tokens)
    assert torch.allclose(source(features, ["a", "b"]).tokens, loaded(features, ["a", "b"]).tokens, atol=5e-2)
    # A folder of shards reads like one file.
    (tmp_path / "shards").mkdir()
    keys = sorted(tensors)
    save_file({k: tensors[k] for k in keys[::2]}, str(tmp_path / "shards" / "model-00001-of-00002.safetensors"))
    save_file({k: tensors[k] for k in keys[1::2]}, str(tmp_path / "shards" / "model-00002-of-00002.safetensors"))
    sharded = _bridge(seed=5, weights=str(tmp_path / "shards"))
    assert all(torch.equal(sharded.state_dict()[k], v) for k, v in loaded.state_dict().items())


def test_weight_errors_name_missing_unexpected_and_mis_shaped_tensors(tmp_path):
    state = {_lavis_key(k): v for k, v in _bridge().state_dict().items()}
    path = str(tmp_path / "bad.safetensors")

    missing = {k: v for k, v in state.items() if k != "Qformer.bert.encoder.layer.1.output_query.dense.weight"}
    save_file(missing, path)
    with pytest.raises(ValueError, match=r"missing 1: qformer\.encoder\.layer\.1\.output_query\.dense\.weight"):
        _bridge(weights=path)

    extra = {**state, "Qformer.bert.encoder.layer.4.attention.self.query.weight": torch.ones(16, 16)}
    save_file(extra, path)
    with pytest.raises(ValueError, match=r"unexpected 1: Qformer\.bert\.encoder\.layer\.4\.attention\.self\.query"):
        _bridge(weights=path)

    save_file({**state, "llm_proj.weight": torch.ones(7, 16), "llm_proj.bias": torch.ones(7)}, path)
    with pytest.raises(ValueError, match=r"shape mismatch 2: .*llm_proj\.weight: \(7, 16\) in file, \(20, 16\) here"):
        _bridge(weights=path)

    no_projection = {k: v for k, v in state.items() if not k.startswith("llm_proj.")}
    save_file(no_projection, path)
    with pytest.raises(ValueError, match="set load_projection: false"):
        _bridge(weights=path)
    kept = _bridge(seed=9, weights=path, load_projection=False)  # the projection keeps its own init
    assert torch.equal(kept.proj.weight, _bridge(seed=9).proj.weight)


def test_a_blip2_file_without_text_input_leaves_only_the_text_path_untrained(tmp_path):
    # BLIP-2 (Hugging Face layout): the embedding norm at `qformer.layernorm`, no word/position embeddings,
    # no text feed-forward; everything the queries use must load.
    source = _bridge(seed=3)
    text_only = ("qformer.embeddings.word_embeddings.", "qformer.embeddings.position_embeddings.")
    tensors = {}
    for key, value in source.state_dict().items():
        if key.startswith(text_only) or ".intermediate." in key or (".output." in key and "attention" not in key):
            continue
        tensors[_hf_key(key.replace("qformer.embeddings.layernorm.", "qformer.layernorm."))] = value
    assert not any(".intermediate." in k for k in tensors) and any(".intermediate_query." in k for k in tensors)
    save_file(tensors, str(tmp_path / "blip2.safetensors"))
    loaded = _bridge(seed=4, weights=str(tmp_path / "blip2.safetensors"))
    fresh = _bridge(seed=4)
    for key, value in loaded.state_dict().items():
        text = key.startswith(text_only) or ".intermediate." in key or (".output." in key and "attention" not in key)
        assert torch.equal(value, (fresh if text else source).state_dict()[key]), key


# The tiny recipes that use these bridges learn and answer (a few pure-torch steps on one synthetic batch).
RECIPES = Path(__file__).resolve().parents[3] / "recipes"


@pytest.mark.parametrize("recipe_name", ["deltavlm-tiny", "instructblip-scst-tiny"])
def test_tiny_recipe_trains_and_generates(tmp_path, recipe_name):
    pytest.importorskip("rsforge.encoders")
    pytest.importorskip("rsforge.decoders")
    import yaml

    from rsforge.core.model import RSForgeModel
    from rsforge.core.plugins import PluginManager
    from rsforge.core.recipe import parse_recipe
    from rsforge.datasets.loading import load_split, training_texts
    from rsforge.datasets.torch_dataset import SampleDataset, collate
    from rsforge.train.steps import build_optimizer, build_scheduler, seed_everything, sft_step

    plugins = PluginManager()
    raw = yaml.safe_load((RECIPES / f"{recipe_name}.yaml").read_text())
    raw["data"].update(root=str(tmp_path / "synth"), n=12)
    recipe = parse_recipe(raw, plugins.registry)
    samples = load_split(recipe, plugins, "train")
    recipe = recipe.prepared(training_texts(samples))
    seed_everything(0)
    model = RSForgeModel.from_recipe(recipe, plugins)
    assert model.bridges[-1].reads_instruction
    dataset = SampleDataset(samples[:8], model.image_size)
    batch = collate([dataset[i] for i in range(len(dataset))])
    optimizer = build_optimizer(model, recipe.train)
    scheduler = build_scheduler(optimizer, recipe.train, total_steps=10)
    losses = [sft_step(model, batch, optimizer, scheduler, grad_clip=recipe.train.grad_clip)["loss"] for _ in range(10)]
    assert losses[-1] < losses[0] - 0.5, losses
    model.eval()
    answers = model.generate(batch.images[:2], [c[:1] for c in batch.conversations[:2]], max_new_tokens=6).texts
    assert len(answers) == 2 and all(isinstance(a, str) and a.strip() for a in answers)
