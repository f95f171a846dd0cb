"""LAVIS checkpoints (`.pth`, weights under `model`) of BLIP-2 and InstructBLIP as rsforge parts.

A LAVIS checkpoint holds the vision encoder (`visual_encoder.*`, EVA-ViT-g; absent from checkpoints saved
with a frozen ViT, which then comes from the separate `eva_vit_g.pth`), `ln_vision`, the Q-Former
(`Qformer.bert.*`), `query_tokens` and the projection (`llm_proj` Vicuna, `t5_proj` FlanT5, `opt_proj` OPT),
but never the LLM: LAVIS loads that from Hugging Face (`--llm`). Sizes are read from the tensors' shapes;
head counts are not in a state dict, so they default to the released head widths (EVA-g 88, BERT 64).

What the converted model keeps of LAVIS (its `eva_vit.py`, `blip2.py`, `blip2_*_instruct.py`):
- EVA's blocks as transformers' `Blip2VisionModel` (the layout of HF's own InstructBLIP conversion): the
  qkv bias is `cat(q_bias, 0, v_bias)`; EVA has no final norm (`final_norm: false`), all 257 tokens go on;
- `ln_vision` (eps 1e-5, unlike the blocks' 1e-6) as the Q-Former's memory norm;
- images resized bicubic to the trained size, normalised with CLIP's mean/std (`blip_image_eval`);
- the Q-Former's instruction: BERT, truncated on the left at 128 tokens (`max_txt_len`);
- Vicuna's prompt starts with `</s>` (LAVIS sets bos = eos = `</s>`), FlanT5 runs with `dense_act_fn: gelu`.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from rsforge.convert.checkpoint import Checkpoint, ConversionError, check_keys, expected_state, write_weights
from rsforge.convert.hf_blip import PROMPT_TEMPLATE, TOKENIZER_FILES
from rsforge.core.atomic import atomic_dir

CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
PROJECTIONS = ("llm_proj", "t5_proj", "opt_proj")
_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")
EVA_G_DEPTH = 39  # eva_vit.py create_eva_vit_g: VisionTransformer(..., depth=39, ...)
_BLOCK_NAMES = {"norm1": "layer_norm1", "norm2": "layer_norm2", "attn.qkv": "self_attn.qkv",
                "attn.proj": "self_attn.projection", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
_TOP = {"cls_token": "embeddings.class_embedding", "pos_embed": "embeddings.position_embedding",
        "patch_embed.proj.weight": "embeddings.patch_embedding.weight",
        "patch_embed.proj.bias": "embeddings.patch_embedding.bias"}


def _vision_name(key: str) -> str | None:
    """An EVA key -> its `Blip2VisionModel` name (q_bias / v_bias both become the qkv bias)."""
    if key in _TOP:
        return _TOP[key]
    match = _BLOCK.fullmatch(key)
    if match is None:
        return None
    i, rest = match.groups()
    if rest in ("attn.q_bias", "attn.v_bias"):
        return f"encoder.layers.{i}.self_attn.qkv.bias"
    module, _, leaf = rest.rpartition(".")
    return f"encoder.layers.{i}.{_BLOCK_NAMES[module]}.{leaf}" if module in _BLOCK_NAMES else None


def _eva_shapes(shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """The EVA keys and shapes that make up a Blip2VisionModel of these shapes (its post_layernorm aside:
    EVA has no final norm, the recipe drops it with `final_norm: false`)."""
    top = {v: k for k, v in _TOP.items()}
    blocks = {v: k for k, v in _BLOCK_NAMES.items()}
    out = {}
    for key, shape in shapes.items():
        if key in top:
            out[top[key]] = shape
            continue
        match = re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", key)
        if match is None:
            continue  # post_layernorm
        i, module, leaf = match.groups()
        if module == "self_attn.qkv" and leaf == "bias":
            out[f"blocks.{i}.attn.q_bias"] = out[f"blocks.{i}.attn.v_bias"] = (shape[0] // 3,)
        else:
            out[f"blocks.{i}.{blocks[module]}.{leaf}"] = shape
    return out


class _Eva:
    """The EVA DeltaVLM runs, keyed without prefix: `eva_vit_g.pth` as create_eva_vit_g loads it (blocks from
    `depth` on are never run), then the checkpoint's `visual_encoder.*` on top (load_from_pretrained)."""

    def __init__(self, checkpoint: Checkpoint, vision: Checkpoint | None, depth: int) -> None:
        self.path = Path(f"{vision.path} + {checkpoint.path}") if vision is not None else checkpoint.path
        self._where: dict[str, tuple[Checkpoint, str]] = {}
        for key in vision.keys() if vision is not None else []:
            match = _BLOCK.match(key)
            if match is None or int(match.group(1)) < depth:
                self._where[key] = (vision, key)
        for key in checkpoint.keys():
            if key.startswith("visual_encoder."):
                self._where[key.removeprefix("visual_encoder.")] = (checkpoint, key)

    def keys(self) -> list[str]:
        return list(self._where)

    def shape(self, key: str) -> tuple[int, ...]:
        source, name = self._where[key]
        return source.shape(name)

    def get(self, key: str) -> torch.Tensor:
        source, name = self._where[key]
        return source.get(name)


def _vision_source(checkpoint: Checkpoint, vision: Path | None, depth: int) -> tuple[Checkpoint | _Eva, str]:
    if any(k.startswith("visual_encoder.") for k in checkpoint.keys()):
        return checkpoint, "visual_encoder."
    if vision is None:
        raise ConversionError(f"{checkpoint.path}: no visual_encoder.* tensors (LAVIS saves only what trains when "
                              "the ViT is frozen); give the EVA-ViT-g weights with --vision eva_vit_g.pth")
    return _eva_file(checkpoint, Checkpoint(vision), depth), ""


def _eva_file(checkpoint: Checkpoint, base: Checkpoint, depth: int) -> _Eva:
    """eva_vit_g.pth as LAVIS runs it: create_eva_vit_g builds `depth` blocks and loads the file with
    strict=False, so its 40th block is never run."""
    blocks = 1 + max((int(m.group(1)) for k in base.keys() if (m := _BLOCK.fullmatch(k))), default=-1)
    if blocks < depth:
        raise ConversionError(f"{base.path}: {blocks} EVA blocks, but LAVIS builds {depth} (--vision-depth)")
    return _Eva(checkpoint, base, depth)


def convert_eva(src: Path, out: Path, *, heads: int | None = None, depth: int = EVA_G_DEPTH) -> dict[str, Any]:
    """LAVIS's bare `eva_vit_g.pth` -> `out`, a Blip2VisionModel folder with the image processor LAVIS uses,
    for an `hf_vision` encoder; returns that encoder's recipe (`pretrained: out`)."""
    from transformers import Blip2VisionModel

    base = Checkpoint(src)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: exists and is not an empty folder; convert writes a new folder")
    with atomic_dir(out) as tmp:
        encoder = convert_vision(_eva_file(base, base, depth), "", tmp, heads)
        for path in (tmp / "vision_model").iterdir():
            path.rename(tmp / path.name)
        (tmp / "vision_model").rmdir()
        (tmp / "preprocessor_config.json").write_text(json.dumps(
            {"image_processor_type": "BlipImageProcessor", "do_resize": True, "resample": 3, "do_normalize": True,
             "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "do_rescale": True, "rescale_factor": 1 / 255,
             "size": {"height": encoder["image_size"], "width": encoder["image_size"]}}, indent=2))
        Blip2VisionModel.from_pretrained(tmp)  # the folder loads as the class it claims to be
    return {**encoder, "pretrained": str(out)}


def convert_vision(source: Checkpoint, prefix: str, out: Path, heads: int | None) -> dict[str, Any]:
    """EVA-ViT-g -> out/vision_model (a Blip2VisionModel folder); returns the encoder's recipe."""
    from transformers import Blip2VisionConfig, Blip2VisionModel

    keys = [k for k in source.keys() if k.startswith(prefix)]
    eva = {k.removeprefix(prefix): k for k in keys}
    if "patch_embed.proj.weight" not in eva or "pos_embed" not in eva:
        raise ConversionError(f"{source.path}: no EVA-ViT patch embedding ({prefix}patch_embed.proj.weight, "
                              f"{prefix}pos_embed)")
    width, _, patch, _ = source.shape(eva["patch_embed.proj.weight"])
    grid = round((source.shape(eva["pos_embed"])[1] - 1) ** 0.5)
    depth = 1 + max(int(m.group(1)) for k in eva if (m := _BLOCK.fullmatch(k)))
    if heads is None and width % 88:
        raise ConversionError(f"{source.path}: EVA width {width} is not a multiple of EVA-g's head width 88; "
                              "give --vision-heads")
    config = Blip2VisionConfig(hidden_size=width, intermediate_size=source.shape(eva["blocks.0.mlp.fc1.weight"])[0],
                               num_hidden_layers=depth, num_attention_heads=heads or width // 88,
                               image_size=grid * patch, patch_size=patch, layer_norm_eps=1e-6, qkv_bias=True)
    with torch.device("meta"):
        shapes, _ = expected_state(Blip2VisionModel(config))
    check_keys(source.path, eva, source.shape, _eva_shapes(shapes), [],
               what=f"EVA-ViT as transformers' Blip2VisionModel ({depth} blocks, width {width})")

    def tensors():
        for name, key in eva.items():
            if name.endswith("attn.v_bias"):
                continue
            if name.endswith("attn.q_bias"):
                def qkv_bias(key=key):
                    q, v = source.get(key), source.get(key.replace("q_bias", "v_bias"))
                    return torch.cat([q, torch.zeros_like(v), v])

                yield _vision_name(name), qkv_bias
            else:
                yield _vision_name(name), lambda key=key: source.get(key)
        # Stand-ins that make the folder a complete Blip2VisionModel; `final_norm: false` never runs them.
        yield "post_layernorm.weight", lambda: torch.ones(width)
        yield "post_layernorm.bias", lambda: torch.zeros(width)

    (out / "vision_model").mkdir(parents=True)
    config.save_pretrained(str(out / "vision_model"))
    write_weights(out / "vision_model", tensors())
    return {"name": "hf_vision", "pretrained": "${recipe_dir}/vision_model", "image_size": grid * patch,
            "interpolation": "bicubic", "mean": CLIP_MEAN, "std": CLIP_STD, "keep_prefix_tokens": True,
            "final_norm": False, "freeze": True}


def _qformer_recipe(checkpoint: Checkpoint, keys: list[str], heads: int | None, tokenizer: str) -> dict[str, Any]:
    """The `qformer` bridge that LAVIS's Q-Former is, sized from the tensors."""
    layer = re.compile(r"Qformer\.bert\.encoder\.layer\.(\d+)\.")
    layers = sorted({int(m.group(1)) for k in keys if (m := layer.match(k))})
    cross = sorted({int(m.group(1)) for k in keys if (m := layer.match(k)) and ".crossattention." in k})
    if "query_tokens" not in keys or not layers or not cross:
        raise ConversionError(f"{checkpoint.path}: not a BLIP-2 / InstructBLIP checkpoint (no query_tokens or "
                              "Qformer.bert.encoder.layer.N.crossattention tensors)")
    _, queries, hidden = checkpoint.shape("query_tokens")
    if heads is None and hidden % 64:
        raise ConversionError(f"{checkpoint.path}: Q-Former width {hidden} is not a multiple of BERT's head width "
                              "64; give --qformer-heads")
    words = "Qformer.bert.embeddings.word_embeddings.weight"
    instruct = words in keys
    bridge = {
        "name": "qformer", "num_queries": queries, "hidden_size": hidden, "num_layers": len(layers),
        "num_heads": heads or hidden // 64,
        "intermediate_size": checkpoint.shape("Qformer.bert.encoder.layer.0.intermediate_query.dense.weight")[0],
        "cross_attention_frequency": cross[1] - cross[0] if len(cross) > 1 else len(layers),
        "norm_memory": True, "instruction_aware": instruct, "weights": "${recipe_dir}/qformer.safetensors",
    }
    if instruct:
        positions = checkpoint.shape("Qformer.bert.embeddings.position_embeddings.weight")[0]
        bridge.update(vocab_size=checkpoint.shape(words)[0], max_position_embeddings=positions,
                      max_instruction_tokens=min(128, positions), tokenizer=tokenizer)
    else:
        bridge["vocab_size"] = 2  # BLIP-2 reads no text: no vocabulary to hold
    return bridge


def _qformer_tokenizer(qformer_tokenizer: str | None, out: Path) -> str:
    """The Q-Former's BERT tokenizer for the recipe: a local folder is copied into out/qformer_tokenizer, a hub
    name is kept, none is bert-base-uncased (what LAVIS's `init_tokenizer` loads)."""
    if qformer_tokenizer is not None and Path(qformer_tokenizer).is_dir():
        shutil.copytree(qformer_tokenizer, out / "qformer_tokenizer")
        return "${recipe_dir}/qformer_tokenizer"
    return qformer_tokenizer if qformer_tokenizer is not None else "bert-base-uncased"


def _copy_llm(llm: Path, out: Path, projection: str, width: int) -> dict[str, Any]:
    """The Hugging Face LLM folder LAVIS loads beside its checkpoint, copied into out/language_model with
    LAVIS's changes to it; returns the decoder's recipe."""
    from transformers import AutoConfig, AutoTokenizer

    if not (llm / "config.json").is_file():
        raise ConversionError(f"--llm {llm}: no config.json; give the Hugging Face folder of the LLM the checkpoint "
                              "was trained with (Vicuna-7B v1.1, FlanT5-XL, OPT-2.7B, ...)")
    config = AutoConfig.from_pretrained(llm)
    hidden = getattr(config, "d_model", None) or config.hidden_size
    if hidden != width:
        raise ConversionError(f"--llm {llm}: hidden size {hidden}, but the checkpoint's {projection} projects to "
                              f"{width}")
    seq2seq = bool(getattr(config, "is_encoder_decoder", False))
    if (projection == "t5_proj") != seq2seq:
        raise ConversionError(f"--llm {llm}: a {config.model_type} model, but {projection} feeds "
                              f"{'an encoder-decoder (T5)' if projection == 't5_proj' else 'a causal'} LM")
    target = out / "language_model"
    target.mkdir(parents=True)
    for path in llm.iterdir():
        if path.is_file() and (path.suffix in (".safetensors", ".json", ".bin") or path.name in TOKENIZER_FILES):
            shutil.copyfile(path, target / path.name)
    if seq2seq:  # blip2_t5(_instruct).py: t5_config.dense_act_fn = "gelu"
        raw = json.loads((target / "config.json").read_text())
        raw["dense_act_fn"] = "gelu"
        (target / "config.json").write_text(json.dumps(raw, indent=2))
        return {"name": "hf_seq2seq_lm", "pretrained": "${recipe_dir}/language_model", "freeze": True}
    decoder = {"name": "hf_causal_lm", "pretrained": "${recipe_dir}/language_model", "freeze": True,
               "chat_template": PROMPT_TEMPLATE}
    if projection == "llm_proj":  # blip2_vicuna_instruct.py: bos, eos and unk are all "</s>"
        tokenizer = AutoTokenizer.from_pretrained(llm)
        tokenizer.bos_token = "</s>"
        tokenizer.save_pretrained(target)
    return decoder


def convert(src: Path, out: Path, *, llm: Path | None, vision: Path | None = None, vision_heads: int | None = None,
            vision_depth: int = EVA_G_DEPTH, qformer_heads: int | None = None,
            qformer_tokenizer: str | None = None) -> dict[str, Any]:
    """Write the parts of the LAVIS checkpoint `src` (+ its LLM, + EVA weights if not inside) into `out`."""
    checkpoint = Checkpoint(src)
    if llm is None:
        raise ConversionError(f"{src}: a LAVIS checkpoint has no LLM weights; give its Hugging Face folder with --llm")
    keys = [k for k in checkpoint.keys() if not k.endswith("position_ids")]
    projection = next((p for p in PROJECTIONS if f"{p}.weight" in keys), None)
    if projection is None:
        raise ConversionError(f"{src}: no projection to the LLM ({', '.join(f'{p}.weight' for p in PROJECTIONS)})")
    bridge_keys = [k for k in keys if k.startswith(("query_tokens", "Qformer.", "ln_vision.", f"{projection}."))]
    stray = [k for k in keys if k not in bridge_keys and not k.startswith("visual_encoder.")]
    if stray:
        raise ConversionError(f"{src}: unexpected {len(stray)} tensors for a LAVIS BLIP-2 / InstructBLIP: "
                              f"{', '.join(stray[:8])}")
    bridge = _qformer_recipe(checkpoint, bridge_keys, qformer_heads, _qformer_tokenizer(qformer_tokenizer, out))
    encoder = convert_vision(*_vision_source(checkpoint, vision, vision_depth), out, vision_heads)
    # LAVIS's own key layout: the qformer bridge reads it (Qformer.bert.*, ln_vision.*, *_proj.*).
    write_weights(out, [(k, lambda k=k: checkpoint.get(k)) for k in bridge_keys
                        if not k.startswith("Qformer.cls.")], name="qformer", shard=False)
    decoder = _copy_llm(llm, out, projection, checkpoint.shape(f"{projection}.weight")[0])
    return {"encoder": encoder, "bridges": [bridge], "decoder": decoder}
