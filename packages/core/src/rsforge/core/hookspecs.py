"""The hooks a plugin may implement, one per kind of part.

Every `register_*` hook receives a `register` callable and calls it once per part:

    register("timm", factory="rsforge.encoders.timm_encoder:TimmEncoder", config=TimmEncoderConfig,
             description="any timm backbone", example={"model_name": "resnet18", "image_size": 32})

`factory` is an import string, so registering a part imports neither torch nor its backend; the
factory is imported only when a recipe builds the part. `example` is a tiny config: the contract
test builds every registered part from it (forward, backward, save/load), so a new part is
covered the day it is registered. Hooks take keyword arguments only, so a
spec can grow new arguments without breaking existing plugins.
"""

from __future__ import annotations

import pluggy

PROJECT = "rsforge"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_encoders(register):
    """Register vision encoders: images (B, 3, H, W) -> VisualFeatures."""


@hookspec
def register_bridges(register):
    """Register bridges: VisualFeatures -> VisualFeatures (fusion of dates, projection to the decoder)."""


@hookspec
def register_decoders(register):
    """Register language-model decoders that read visual tokens as input embeddings."""


@hookspec
def register_heads(register):
    """Register heads that read encoder feature maps (change masks, classification)."""


@hookspec
def register_rewards(register):
    """Register reward functions: (candidates, references, extras) -> per-sample scores."""


@hookspec
def register_datasets(register):
    """Register dataset readers: config + split -> list of `Sample`."""


@hookspec
def register_tasks(register):
    """Register tasks: a prompt template, how to read a sample's reference, parse a model answer and
    score a split (factory: the task object; see `rsforge.tasks`)."""


@hookspec
def register_commands(cli):
    """Add CLI sub-commands. `cli` is the argparse sub-parsers object of the `rsforge` command."""
