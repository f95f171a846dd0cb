"""A converted checkpoint is served as it is: the folder `rsforge convert` writes moves elsewhere, and the
serving replica (the deployment's own class, without Ray) loads it and answers an OpenAI chat request with
the converted model's own greedy answer, which equals transformers' InstructBLIP (packages/convert/tests)."""

from __future__ import annotations

import asyncio
import shutil

import torch

from rsforge.core.cli import main
from rsforge.core.sample import Turn
from rsforge.serve.openai_requests import ChatRequest
from rsforge.serve.replica import ModelDeployment, PendingChat

from .conftest import ROOT

REFERENCE = ROOT / "packages" / "convert" / "tests"


def test_a_converted_model_moves_and_serves(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REFERENCE))
    from hf_reference import build_reference

    build_reference(tmp_path / "src", "hf-instructblip", "t5")
    assert main(["convert", "--from", "hf-instructblip", str(tmp_path / "src"), str(tmp_path / "converted")]) == 0
    moved = tmp_path / "elsewhere" / "instructblip"
    moved.parent.mkdir()
    shutil.move(tmp_path / "converted", moved)  # `${recipe_dir}` paths: the folder is self-contained
    replica = ModelDeployment.func_or_class(str(moved), "instructblip", 4, 0.0)
    assert replica.info()["num_images"] == 1
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    request = ChatRequest("instructblip", [Turn("user", "describe the change")], images, max_tokens=5,
                          temperature=0.0, top_p=1.0)

    async def ask():
        return await asyncio.to_thread(replica.run_batch, [PendingChat(request, asyncio.get_running_loop())])

    (outcome,) = asyncio.run(ask())
    expected = replica.model.generate(images[None], [request.conversation], max_new_tokens=5)
    assert outcome["choices"] == [(expected.texts[0], expected.finish_reasons[0])]
