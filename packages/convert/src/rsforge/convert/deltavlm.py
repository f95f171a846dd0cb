"""DeltaVLM's released checkpoint (`checkpoint_best.pth`, hub repo hlwu/DeltaVLM; code github.com/hanlinwu/DeltaVLM,
`model/blip2_vicua.py` `Blip2VicunaInstruct`, a LAVIS InstructBLIP fork) as rsforge parts.

The `.pth` is what DeltaVLM's `RunnerBase._save_checkpoint` writes: {"model", "optimizer", "config", "scaler",
"epoch"}, where `model` is the state dict minus every parameter with requires_grad False. With `freeze_vit: True`
(its training configs) and the LLM frozen, `model` holds:

- `visual_encoder.blocks.37.*`, `visual_encoder.blocks.38.*`: the two fine-tuned last EVA blocks (the other blocks,
  patch and position embeddings come from LAVIS's `eva_vit_g.pth`, which `create_eva_vit_g` loads with depth=39 and
  strict=False: a 40th block in that file is never run) -> `--vision eva_vit_g.pth`;
- `ln_vision.*`, `context1.weight`, `context2.*`, `gate1.weight`, `gate2.*`, `context3.*`: IDPM/CSRM, written in
  these names to `difference_perception.safetensors` for the `difference_perception` bridge's `weights`;
- `Qformer.bert.*`, `query_tokens`, `llm_proj.*`: the instruction-aware Q-Former, written in LAVIS names to
  `qformer.safetensors` for the `qformer` bridge (its memory is CSRM's output: no norm of its own);
- `vision_proj.*`, `text_proj.*`, `temp`: contrastive heads no forward path uses (dropped);
- buffers, which `_save_checkpoint` keeps: `Qformer.bert.embeddings.position_ids`, and the frozen Vicuna's
  `llm_model.model.layers.N.self_attn.rotary_emb.inv_freq` (dropped); never the LLM's weights (`--llm`).

What the converted model keeps of DeltaVLM's `generate` (its inference path):
    input_bef = self.ln_vision(self.visual_encoder(image_A)); input_aft = ... (image_B)
    input_diff = input_aft - input_bef; CSRM per date; image_embeds = cat((context3(...A), context3(...B)), dim=1)
    Qformer.bert(prompt tokens, query_embeds, encoder_hidden_states=image_embeds); llm_proj(...[:, :32])
i.e. all 257 EVA tokens per date (CLS kept: `keep_prefix_tokens`), the 39th block's output (no final norm),
`ln_vision` inside the difference bridge (`norm_input: true`) and none before the Q-Former (`norm_memory: false`),
images resized bicubic to 224 with CLIP's mean/std (its `BlipImageEvalProcessor`), Vicuna's prompt after `</s>`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rsforge.convert.checkpoint import Checkpoint, ConversionError, check_keys, write_weights
from rsforge.convert.lavis import EVA_G_DEPTH, _copy_llm, _Eva, _qformer_recipe, _qformer_tokenizer, convert_vision

CSRM = ("ln_vision.", "context1.", "context2.", "gate1.", "gate2.", "context3.")
UNUSED = ("vision_proj.", "text_proj.")  # + "temp": the contrastive heads of a commented-out ITC loss
_BLOCK = re.compile(r"blocks\.(\d+)\.")


def _csrm_shapes(width: int) -> dict[str, tuple[int, ...]]:
    """DeltaVLM's IDPM/CSRM tensors (Blip2VicunaInstruct.__init__) at EVA width `width`."""
    square = (width, width)
    return {"ln_vision.weight": (width,), "ln_vision.bias": (width,), "context1.weight": square,
            "context2.weight": square, "context2.bias": (width,), "gate1.weight": square, "gate2.weight": square,
            "gate2.bias": (width,), "context3.weight": (width, 3 * width), "context3.bias": (width,)}


def _eva(checkpoint: Checkpoint, keys: list[str], vision: Path | None) -> _Eva:
    trained = sorted({int(m.group(1)) for k in keys
                      if k.startswith("visual_encoder.") and (m := _BLOCK.match(k.removeprefix("visual_encoder.")))})
    if "visual_encoder.patch_embed.proj.weight" in keys:  # a checkpoint trained with freeze_vit: false
        return _Eva(checkpoint, None, 1 + trained[-1])
    if vision is None:
        held = f"only visual_encoder.blocks.{{{','.join(map(str, trained))}}}" if trained else "no visual_encoder"
        raise ConversionError(f"{checkpoint.path}: {held} (DeltaVLM saves only what trains); give the EVA-ViT-g "
                              "weights its create_eva_vit_g loads with --vision eva_vit_g.pth")
    base = Checkpoint(vision)
    base_blocks = {int(m.group(1)) for k in base.keys() if (m := _BLOCK.match(k))}
    # The fine-tuned blocks are the model's last ones (DeltaVLM: 37 and 38 of 39); without any, EVA-g's 39.
    depth = 1 + trained[-1] if trained else min(EVA_G_DEPTH, 1 + max(base_blocks, default=-1))
    return _Eva(checkpoint, base, depth)


def convert(src: Path, out: Path, *, llm: Path | None, vision: Path | None = None, vision_heads: int | None = None,
            qformer_heads: int | None = None, qformer_tokenizer: str | None = None) -> dict[str, Any]:
    """Write the parts of DeltaVLM's checkpoint `src` (+ its Vicuna, + eva_vit_g.pth) into `out`; returns the
    recipe: hf_vision -> difference_perception -> qformer -> hf_causal_lm."""
    checkpoint = Checkpoint(src)
    if llm is None:
        raise ConversionError(f"{src}: a DeltaVLM checkpoint has no LLM weights; give its Vicuna-7B v1.5 Hugging Face "
                              "folder with --llm")
    keys = [k for k in checkpoint.keys() if not k.endswith("position_ids")]
    qformer_keys = [k for k in keys if k.startswith(("query_tokens", "Qformer.", "llm_proj."))]
    csrm_keys = [k for k in keys if k.startswith(CSRM)]
    dropped = [k for k in keys if k.startswith(UNUSED) or k == "temp"
               or (k.startswith("llm_model.") and k.endswith("rotary_emb.inv_freq"))]
    stray = [k for k in keys if k not in {*qformer_keys, *csrm_keys, *dropped} and not k.startswith("visual_encoder.")]
    if stray:
        raise ConversionError(f"{src}: unexpected {len(stray)} tensors for a DeltaVLM checkpoint: "
                              f"{', '.join(stray[:8])}")
    if "llm_proj.weight" not in keys:
        raise ConversionError(f"{src}: no llm_proj.weight (the projection to Vicuna): not a DeltaVLM checkpoint")
    eva = _eva(checkpoint, keys, vision)
    if "patch_embed.proj.weight" not in eva.keys():
        raise ConversionError(f"{eva.path}: no EVA-ViT patch embedding (patch_embed.proj.weight)")
    width = eva.shape("patch_embed.proj.weight")[0]
    check_keys(checkpoint.path, {k: k for k in csrm_keys}, checkpoint.shape, _csrm_shapes(width), [],
               what=f"DeltaVLM's ln_vision + CSRM (context1-3, gate1-2) at EVA width {width}")
    qformer = _qformer_recipe(checkpoint, qformer_keys, qformer_heads, _qformer_tokenizer(qformer_tokenizer, out))
    if not qformer["instruction_aware"]:
        raise ConversionError(f"{src}: no Qformer.bert.embeddings.word_embeddings: DeltaVLM's Q-Former reads the "
                              "instruction (qformer_text_input: True)")
    qformer["norm_memory"] = False  # generate: encoder_hidden_states=image_embeds, the context3 outputs as they are
    qformer["instruction"] = "dialogue"  # its dataset.py: the history's q/a pairs, then the question
    encoder = convert_vision(eva, "", out, vision_heads)
    write_weights(out, [(k, lambda k=k: checkpoint.get(k)) for k in csrm_keys], name="difference_perception",
                  shard=False)
    write_weights(out, [(k, lambda k=k: checkpoint.get(k)) for k in qformer_keys if not k.startswith("Qformer.cls.")],
                  name="qformer", shard=False)
    difference = {"name": "difference_perception", "norm_input": True, "dropout": 0.5,
                  "weights": "${recipe_dir}/difference_perception.safetensors"}
    decoder = _copy_llm(llm, out, "llm_proj", checkpoint.shape("llm_proj.weight")[0])
    # How DeltaVLM scores itself (evaluate.py -> predict_answers): 5 beams, up to 256 tokens, repetition penalty 1.5.
    evaluation = {"num_beams": 5, "max_new_tokens": 256, "repetition_penalty": 1.5}
    return {"encoder": encoder, "bridges": [difference, qformer], "decoder": decoder, "eval": evaluation}
