"""RSForgeModel: the container that runs encoder -> bridges -> decoder, and heads beside them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from rsforge.core.assembler import assemble_parts
from rsforge.core.atomic import atomic_dir
from rsforge.core.batch import INSTRUCTIONS, Batch, Losses, first_user_turns
from rsforge.core.interfaces import Generation, GenerationOptions, OnTokens, VisualFeatures
from rsforge.core.masks import logits_to_mask
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import Recipe, expand_recipe_dir, parse_recipe
from rsforge.core.sample import Turn

RECIPE_FILE = "recipe.yaml"
WEIGHTS_FILE = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


class RSForgeModel(nn.Module):
    def __init__(self, recipe: Recipe, *, encoder, bridges, decoder, heads) -> None:
        super().__init__()
        self.recipe = recipe
        # A decoder that reads images itself (a VLM with its own vision tower) gets the raw images
        # and the model has no encoder (the assembler checks the recipe names none).
        self.reads_images = decoder is not None and decoder.reads_images
        self.encoder = encoder
        self.bridges = nn.ModuleList(bridges)
        self.decoder = decoder
        self.heads = nn.ModuleList(heads)

    @classmethod
    def from_recipe(cls, recipe: Recipe, plugins: PluginManager, *,
                    device: str | torch.device | None = None) -> RSForgeModel:
        """Build every part of `recipe` and wire them; `device="meta"` builds shapes without weights."""
        parts = assemble_parts(recipe, plugins, device=device)
        return cls(parts.recipe, encoder=parts.encoder, bridges=parts.bridges, decoder=parts.decoder,
                   heads=parts.heads)

    # ---- what the model is --------------------------------------------------------------------

    @property
    def image_size(self) -> int:
        return self.decoder.image_size if self.reads_images else self.encoder.image_size

    @property
    def tile(self) -> int:
        """The scale the model was trained at, which tiled inference uses by default: native pixels per
        input side (the recipe's `train.crop`); without crops, the input size (whole images were resized
        to it, so no single native scale exists)."""
        return self.recipe.train.crop or self.image_size

    @property
    def interpolation(self) -> str:
        """The resampling filter images are resized with before they reach the model: the encoder's
        recorded choice, so serving preprocesses exactly as training did."""
        return "bilinear" if self.encoder is None else self.encoder.interpolation

    @property
    def in_chans(self) -> int:
        """The bands each image carries into the model (`channels` of the data loader): the encoder's
        `in_chans` (13 for a Sentinel-2 stem); 3 (RGB) for a decoder that reads images itself."""
        return 3 if self.reads_images or self.encoder is None else self.encoder.in_chans

    @property
    def num_images(self) -> int:
        if self.reads_images:
            return self.decoder.num_images
        two_dates = any(b.bitemporal for b in self.bridges) or any(h.bitemporal for h in self.heads)
        return 2 if two_dates else 1

    @property
    def max_context(self) -> int:
        return self.decoder.max_context if self.decoder is not None else 0

    @property
    def mask_heads(self) -> list[nn.Module]:
        return [h for h in self.heads if h.predicts_mask]

    def count_tokens(self, text: str) -> int:
        return self._text_decoder().count_tokens(text)

    # ---- the forward passes ---------------------------------------------------------------------

    def encode(self, images: torch.Tensor) -> VisualFeatures:
        """images (B, T, 3, S, S) -> features with the dates kept apart as T."""
        self._check_images(images)
        b, t = images.shape[:2]
        tokens, maps = self.encoder(images.flatten(0, 1))
        return VisualFeatures(tokens=tokens.unflatten(0, (b, t)), maps=[m.unflatten(0, (b, t)) for m in maps])

    def features_of(self, images: torch.Tensor, features: VisualFeatures | None = None) -> VisualFeatures:
        """The encoder's features of `images`, or `features` computed earlier for them (a cache)."""
        if features is None:
            return self.encode(images)
        self._check_images(images)
        if tuple(features.tokens.shape[:2]) != tuple(images.shape[:2]):
            raise ValueError(f"precomputed features are for {tuple(features.tokens.shape[:2])} (B, T) images, "
                             f"the batch has {tuple(images.shape[:2])}")
        return features

    def _check_images(self, images: torch.Tensor) -> None:
        if images.dim() != 5 or images.shape[1] != self.num_images:
            raise ValueError(
                f"images must be (B, {self.num_images}, 3, {self.image_size}, {self.image_size}), "
                f"got {tuple(images.shape)}"
            )

    def bridge(self, features: VisualFeatures, instructions: list[str] | None = None,
               conversations: list[list[Turn]] | None = None) -> VisualFeatures:
        """Run the bridge chain; a bridge that reads instructions gets the text of each conversation that its
        `instruction` names (else `instructions`, the first user turns or a caller's prompts)."""
        for bridge in self.bridges:
            text = instructions
            if bridge.reads_instruction and conversations is not None:
                text = INSTRUCTIONS[bridge.instruction](conversations)
            features = bridge(features, text)
        return features

    def decoder_input(self, images: torch.Tensor, conversations: list[list[Turn]],
                      features: VisualFeatures | None = None) -> torch.Tensor:
        """What the decoder reads: visual tokens (B, N, D), or the images themselves."""
        if self.reads_images:
            self._check_images(images)
            return images
        bridged = self.bridge(self.features_of(images, features), first_user_turns(conversations), conversations)
        return bridged.tokens.flatten(1, 2)

    def _heads_read_bridges(self) -> bool:
        return any(b.aligns_maps for b in self.bridges) or any(h.reads_bridged_tokens for h in self.heads)

    def _head_inputs(self, features: VisualFeatures, bridged: VisualFeatures | None, head,
                     instructions: list[str] | None) -> VisualFeatures:
        """What a head reads: the encoder's tokens, or (`reads_bridged_tokens`) the bridged ones, so one
        model answers in text and in pixels from the same tokens; and the maps of both dates, as aligned
        by a bridge that aligns them (BEV) or else as the encoder made them."""
        if not self._heads_read_bridges():
            return features
        bridged = bridged or self.bridge(features, instructions)
        tokens = bridged.tokens if head.reads_bridged_tokens else features.tokens
        maps = bridged.maps if any(b.aligns_maps for b in self.bridges) else features.maps
        return VisualFeatures(tokens=tokens, maps=maps)

    def forward(self, batch: Batch) -> Losses:
        """Training losses of a collated batch, weighted as the recipe says."""
        weight = self.recipe.train.lm_loss_weight
        if self.reads_images:
            lm = self.decoder(self.decoder_input(batch.images, batch.conversations), batch.conversations)
            return Losses(total=weight * lm, lm=lm)
        features = self.features_of(batch.images, batch.features)
        instructions = batch.instructions
        losses = Losses(total=features.tokens.new_zeros(()))
        bridged = None  # run the bridges once, for the decoder and every head that reads them
        if self.decoder is not None or self._heads_read_bridges():
            bridged = self.bridge(features, instructions, batch.conversations)
        if self.decoder is not None:
            losses.lm = self.decoder(bridged.tokens.flatten(1, 2), batch.conversations)
            losses.total = losses.total + weight * losses.lm
        for head, config in zip(self.heads, self.recipe.heads, strict=True):
            # Mask heads train on `masks` where `mask_valid`; class heads on `labels`, -1 = none.
            if head.predicts_mask:
                target, valid = batch.masks, batch.mask_valid if batch.masks is not None else None
            else:
                target, valid = batch.labels, batch.labels >= 0 if batch.labels is not None else None
            if valid is None or not bool(valid.any()):
                continue
            logits = head(self._head_inputs(features, bridged, head, instructions), self.image_size, instructions)
            loss = head.loss(logits[valid], target[valid])
            losses.heads[f"{'mask' if head.predicts_mask else 'class'}_{config.name}"] = loss
            losses.total = losses.total + config.weight * loss
        return losses

    def _text_decoder(self):
        if self.decoder is None:
            raise ValueError(f"model '{self.recipe.name}' has no decoder, so it cannot answer in text")
        return self.decoder

    @torch.no_grad()
    def generate(self, images: torch.Tensor, conversations: list[list[Turn]],
                 options: GenerationOptions | None = None, *, features: VisualFeatures | None = None,
                 on_tokens: OnTokens | None = None, **option_fields) -> Generation:
        """Answers to each conversation (ending with a user turn), decoded as `options` (or the
        `GenerationOptions` fields given as keywords) say; `on_tokens` streams them when the decoder
        `streams`. `features`: the encoder's features of `images`, computed earlier."""
        decoder = self._text_decoder()
        options = replace(options or GenerationOptions(), **option_fields)
        visual = self.decoder_input(images, conversations, features)
        return decoder.generate(visual, conversations, options, on_tokens)

    def continuation_logits(self, images: torch.Tensor, conversations: list[list[Turn]], token_ids: torch.Tensor,
                            *, features: VisualFeatures | None = None) -> torch.Tensor:
        """Logits (N, L, V), with gradient through every trainable part, that predict `token_ids` (N, L)
        after each prompt; N may be a multiple of the batch (K rollouts per input, input-major)."""
        decoder = self._text_decoder()
        if not decoder.scores_continuations:
            raise ValueError(f"decoder ({self.recipe.decoder.name}) cannot score continuations")
        visual = self.decoder_input(images, conversations, features)
        k, rem = divmod(token_ids.shape[0], len(conversations))
        if rem:
            raise ValueError(f"{token_ids.shape[0]} continuations for {len(conversations)} prompts")
        repeated = [c for c in conversations for _ in range(k)]
        return decoder.continuation_logits(visual.repeat_interleave(k, 0), repeated, token_ids)

    @torch.no_grad()
    def mask_logits(self, images: torch.Tensor, instructions: list[str] | None = None, *,
                    features: VisualFeatures | None = None) -> torch.Tensor:
        """images (B, 2, 3, S, S) -> logits (B, K, S, S) of the first mask head; `instructions` (one text
        per image pair) steer a text-guided head."""
        if not self.mask_heads:
            raise ValueError(f"model '{self.recipe.name}' has no mask head")
        head = self.mask_heads[0]
        features = self.features_of(images, features)
        return head(self._head_inputs(features, None, head, instructions), self.image_size, instructions)

    @torch.no_grad()
    def class_logits(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, T, 3, S, S) -> logits (B, K) of the first classification head."""
        head = next((h for h in self.heads if not h.predicts_mask), None)
        if head is None:
            raise ValueError(f"model '{self.recipe.name}' has no classification head")
        features = self.encode(images)
        return head(self._head_inputs(features, None, head, None), self.image_size)

    @torch.no_grad()
    def predict_mask(self, before: torch.Tensor, after: torch.Tensor, threshold: float = 0.5,
                     instructions: list[str] | None = None) -> torch.Tensor:
        """before, after (B, 3, S, S) -> bool change mask (B, S, S) (binary) or class ids (K > 1)."""
        return logits_to_mask(self.mask_logits(torch.stack([before, after], dim=1), instructions), threshold)

    def parts(self) -> list[tuple[str, str, nn.Module]]:
        """(part path, part name, module) for each part, in recipe order."""
        rows = [] if self.encoder is None else [("encoder", self.recipe.encoder.name, self.encoder)]
        bridges = zip(self.recipe.bridges, self.bridges, strict=True)
        rows += [(f"bridges[{i}]", c.name, m) for i, (c, m) in enumerate(bridges)]
        if self.decoder is not None:
            rows.append(("decoder", self.recipe.decoder.name, self.decoder))
        return rows + [(f"heads[{i}]", c.name, m)
                       for i, (c, m) in enumerate(zip(self.recipe.heads, self.heads, strict=True))]

    def parameter_counts(self) -> list[tuple[str, str, int, int]]:
        """(part path, part name, total, trainable) for each part."""
        return [
            (path, name, sum(p.numel() for p in m.parameters()),
             sum(p.numel() for p in m.parameters() if p.requires_grad))
            for path, name, m in self.parts()
        ]

    # ---- save and load --------------------------------------------------------------------------

    def _not_saved(self) -> set[str]:
        """Frozen parameters of parts whose weights come from a source named in the recipe (a
        pretrained LM, a LoRA base): the recipe rebuilds them, so saving them again would only copy
        gigabytes. Everything trainable, and every buffer, is saved."""
        skipped: set[str] = set()
        for prefix, module in self.named_modules():
            if getattr(module, "weights_from_source", False):
                # remove_duplicate=False: a tied alias (GPT-2's lm_head = wte) is source weight too.
                params = module.named_parameters(prefix=prefix, remove_duplicate=False)
                skipped.update(name for name, p in params if not p.requires_grad)
        return skipped

    def _state_to_save(self) -> tuple[dict[str, torch.Tensor], set[str]]:
        """The state dict minus source weights, each shared (tied) tensor stored once; also the
        names that a reload may find missing."""
        skipped = self._not_saved()
        state, seen, may_miss = {}, {}, set(skipped)
        for name, tensor in self.state_dict().items():
            if name in skipped:
                continue
            key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
            if key in seen:
                may_miss.add(name)  # a tied alias: loading its twin fills it
                continue
            seen[key] = name
            state[name] = tensor.detach().contiguous()
        return state, may_miss

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write `recipe.yaml` + `model.safetensors`, atomically (a crash leaves the old copy whole)."""
        directory = Path(directory)
        state, _ = self._state_to_save()
        with atomic_dir(directory) as tmp:
            (tmp / RECIPE_FILE).write_text(self.recipe.to_yaml())
            # One metadata key: safetensors writes metadata in hash-map order, so two keys would make the
            # bytes of identical weights differ from one save to the next.
            save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        return directory

    def load_weights(self, path: str | Path) -> None:
        """Load `model.safetensors` written by `save_pretrained`; anything else missing is an error."""
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None
        _, may_miss = self._state_to_save()
        own = self.state_dict()
        for key, tensor in state.items():
            if key in own and own[key].shape != tensor.shape:
                raise ValueError(f"{path}: {key} has shape {tuple(tensor.shape)} in the file, but the recipe builds "
                                 f"{tuple(own[key].shape)}")
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = sorted(set(missing) - may_miss)
        if missing or unexpected:
            raise ValueError(
                f"{path} does not fit the recipe: missing {missing[:5]}, unexpected {sorted(unexpected)[:5]}"
            )

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, *, plugins: PluginManager | None = None, device: str | torch.device = "cpu"
    ) -> RSForgeModel:
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"{directory}: not a model directory")
        weights = directory / WEIGHTS_FILE
        if not weights.is_file():
            pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
            if pickles:
                raise ValueError(
                    f"{directory}: refusing to load pickled weights {pickles} (they can run arbitrary code); "
                    f"convert them to {WEIGHTS_FILE}"
                )
            raise FileNotFoundError(f"{weights}: missing; a saved rsforge model has {RECIPE_FILE} + {WEIGHTS_FILE}")
        recipe_path = directory / RECIPE_FILE
        if not recipe_path.is_file():
            raise FileNotFoundError(f"{recipe_path}: missing")
        plugins = plugins or PluginManager()
        raw = expand_recipe_dir(yaml.safe_load(recipe_path.read_text()), directory)
        recipe = parse_recipe(raw, plugins.registry, source=str(recipe_path))
        model = cls.from_recipe(recipe, plugins)
        model.load_weights(weights)
        return model.to(device).eval()
