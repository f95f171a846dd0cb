"""A Hugging Face image-text-to-text model (Qwen2-VL class) as an rsforge decoder that reads images.

It owns its vision tower, so it sets `reads_images = True`: the model container hands it the raw
images `(B, T, 3, S, S)` in [0, 1] instead of visual tokens (no encoder or bridges run). Each image
becomes `<|vision_start|> <|image_pad|> x n <|vision_end|>` in the token sequence, where the
conversation has its i-th `<image>`, or at the start of the first user turn; the model's vision
tower fills the pads. Generation goes through `transformers`' `generate` (multimodal RoPE keeps
per-row position state that its own loop already handles).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import AutoImageProcessor, AutoModelForImageTextToText

from rsforge.core.interfaces import Decoder, Generation, GenerationOptions, OnTokens
from rsforge.core.sample import Turn
from rsforge.decoders import common
from rsforge.decoders.chat import IGNORE, ChatFormat
from rsforge.decoders.configs import HFVLMConfig
from rsforge.decoders.generation import clear_generation_defaults, hf_generate

VISION_START, IMAGE_PAD, VISION_END = "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"


class HFVLM(Decoder):
    reads_images = True
    streams = True

    def __init__(self, config: HFVLMConfig) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = common.load_tokenizer(config, [VISION_START, IMAGE_PAD, VISION_END])
        vlm = self._build(config)
        self.stop_ids = common.stop_token_ids(vlm, self.tokenizer)
        clear_generation_defaults(vlm)  # decoding follows GenerationOptions only
        self.vlm = common.set_training_mode(vlm, config)
        self.weights_from_source = config.pretrained is not None
        text = vlm.config.get_text_config()
        self.hidden_size = text.hidden_size
        self.max_context = getattr(text, "max_position_embeddings", 2048)
        self.image_size, self.num_images = config.image_size, config.num_images
        self.image_token_id = vlm.config.image_token_id
        self._block_ends = (vlm.config.vision_start_token_id, vlm.config.vision_end_token_id)
        self.processor = self._image_processor(config, vlm.config.vision_config)
        patch, merge = self.processor.patch_size, self.processor.merge_size
        if config.image_size % (patch * merge):
            raise ValueError(f"decoder.image_size={config.image_size} must be a multiple of patch_size x merge_size "
                             f"= {patch * merge}")
        self.tokens_per_image = (config.image_size // patch) ** 2 // merge**2
        self.pad_id = self.tokenizer.pad_token_id
        self.chat = ChatFormat(self.tokenizer, common.chat_template(config, self.tokenizer))

    def _build(self, config: HFVLMConfig) -> nn.Module:
        tok = self.tokenizer

        def word_level(vlm_config, options: dict) -> None:  # the vocabulary lives in the text config
            ids = tok.convert_tokens_to_ids([VISION_START, IMAGE_PAD, VISION_END])
            vlm_config.vision_start_token_id, vlm_config.image_token_id, vlm_config.vision_end_token_id = ids
            text = vlm_config.get_text_config()
            common.fit_word_level(text, config, tok, options.get("text_config", {}).get("vocab_size"))
            for cfg in (vlm_config, text):
                cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = (tok.bos_token_id, tok.eos_token_id,
                                                                        tok.pad_token_id)

        return common.build_lm(config, AutoModelForImageTextToText, example="'qwen2_vl'", word_level=word_level)

    @staticmethod
    def _image_processor(config: HFVLMConfig, vision_config):
        # Images arrive at `image_size`, scaled to [0, 1]: the processor only normalises and patchifies.
        fixed = {"do_resize": False, "do_rescale": False}
        if config.pretrained is not None and torch.get_default_device().type != "meta":
            return AutoImageProcessor.from_pretrained(config.pretrained, **config.image_processor, **fixed)
        from transformers import Qwen2VLImageProcessor

        options = {"patch_size": vision_config.patch_size, "merge_size": vision_config.spatial_merge_size,
                   "temporal_patch_size": vision_config.temporal_patch_size, **config.image_processor}
        return Qwen2VLImageProcessor(**options, **fixed)

    def _expand(self, ids: list[int], labels: list[int], slots: list[int]) -> tuple[list[int], list[int]]:
        """Put one vision block at each slot (from the last, so earlier indices stay valid)."""
        start, end = self._block_ends
        block = [start] + [self.image_token_id] * self.tokens_per_image + [end]
        for at in reversed(slots):
            ids = ids[:at] + block + ids[at:]
            labels = labels[:at] + [IGNORE] * len(block) + labels[at:]
        return ids, labels

    def _pack(self, images: torch.Tensor, conversations: list[list[Turn]], *, generation: bool) -> dict:
        if images.dim() != 5 or images.shape[0] != len(conversations):
            raise ValueError(f"images must be (B, T, 3, S, S) with B = {len(conversations)} conversations, "
                             f"got {tuple(images.shape)}")
        t = images.shape[1]
        rows = []
        for conv in conversations:
            enc = self.chat.encode(conv, generation_prompt=generation, images=t, default="first_user")
            rows.append(self._expand(enc.ids, enc.labels, enc.slots))
        width = max(len(ids) for ids, _ in rows)
        limit = self.max_context - (1 if generation else 0)
        if width > limit:
            raise ValueError(f"prompt of {width} tokens ({t} image(s)) exceeds the decoder context of {limit}")
        ids, attn, labels = [], [], []
        for row_ids, row_labels in rows:
            pad = width - len(row_ids)
            if generation:
                ids.append([self.pad_id] * pad + row_ids)
                attn.append([0] * pad + [1] * len(row_ids))
                labels.append([IGNORE] * pad + row_labels)
            else:
                ids.append(row_ids + [self.pad_id] * pad)
                attn.append([1] * len(row_ids) + [0] * pad)
                labels.append(row_labels + [IGNORE] * pad)
        device = images.device
        pixels = self.processor(images=list(images.flatten(0, 1).float().cpu()), return_tensors="pt")
        input_ids = torch.tensor(ids, device=device)
        dtype = self.vlm.get_input_embeddings().weight.dtype
        return {
            "input_ids": input_ids,
            "attention_mask": torch.tensor(attn, device=device),
            "mm_token_type_ids": (input_ids == self.image_token_id).int(),
            "pixel_values": pixels["pixel_values"].to(device=device, dtype=dtype),
            "image_grid_thw": pixels["image_grid_thw"].to(device),
            "labels": torch.tensor(labels, device=device),
        }

    def forward(self, images: torch.Tensor, conversations: list[list[Turn]]) -> torch.Tensor:
        return self.vlm(**self._pack(images, conversations, generation=False)).loss

    def generation_inputs(self, images: torch.Tensor, conversations: list[list[Turn]]) -> dict[str, torch.Tensor]:
        """What `generate` hands to `transformers`' `generate`: token ids with the vision blocks
        (padded on the left), attention mask, pixel values and image grid."""
        inputs = self._pack(images, conversations, generation=True)
        inputs.pop("labels")
        return inputs

    def generate(self, images: torch.Tensor, conversations: list[list[Turn]], options: GenerationOptions,
                 on_tokens: OnTokens | None = None) -> Generation:
        """Answers through `transformers`' `generate` (see `Decoder.generate`)."""
        return hf_generate(self.vlm, self.tokenizer, self.generation_inputs(images, conversations), options,
                           stop_ids=self.stop_ids, pad_id=self.pad_id, max_context=self.max_context,
                           on_tokens=on_tokens)

    def export_adapter(self, directory: str | Path) -> Path:
        """Write the LoRA adapters as a standard peft folder."""
        return common.export_adapter(self.vlm, directory)
