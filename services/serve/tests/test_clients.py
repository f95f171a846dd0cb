"""Real clients besides `openai` (issue 20): the `llm` command-line tool, configured through its
`extra-openai-models.yaml` with image attachments, and LangChain's `ChatOpenAI`. Each must get the
answer the server gives the official client for the same images and prompt (greedy by default)."""

import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest
import yaml
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from PIL import Image

from rsforge.serve.client import data_url, image_message

pytestmark = pytest.mark.ray

PROMPT = "describe the changes"
LLM = Path(sys.executable).with_name("llm")


@pytest.fixture(scope="module")
def pair_images(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("client-images")
    Image.new("RGB", (48, 48), (30, 140, 40)).save(root / "before.png")
    Image.new("RGB", (48, 48), (220, 220, 220)).save(root / "after.png")
    return root / "before.png", root / "after.png"


@pytest.fixture(scope="module")
def expected(live_app, pair_images) -> str:
    client = openai.OpenAI(base_url=live_app.url, api_key="unused", max_retries=0, timeout=60)
    reply = client.chat.completions.create(model="pair", messages=[image_message(PROMPT, *pair_images)],
                                           max_tokens=16)
    return reply.choices[0].message.content


def test_the_llm_cli_with_image_attachments(live_app, pair_images, expected, tmp_path):
    # llm's own way to reach an OpenAI-compatible server: an extra model in its user directory.
    models = [{"model_id": "rsforge-pair", "model_name": "pair", "api_base": live_app.url, "vision": True,
               "attachment_types": ["image/png"]}]
    (tmp_path / "extra-openai-models.yaml").write_text(yaml.safe_dump(models))
    env = {**os.environ, "LLM_USER_PATH": str(tmp_path), "OPENAI_API_KEY": "unused"}
    before, after = pair_images
    for stream in ("--no-stream", None):
        command = [str(LLM), "prompt", "-m", "rsforge-pair", PROMPT, "-a", str(before), "-a", str(after),
                   "-o", "max_tokens", "16", *([stream] if stream else [])]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == expected


def test_langchain_chat_openai(live_app, pair_images, expected):
    chat = ChatOpenAI(model="pair", base_url=live_app.url, api_key="unused", max_retries=0, timeout=60,
                      max_completion_tokens=16)
    content = [{"type": "text", "text": PROMPT},
               *({"type": "image_url", "image_url": {"url": data_url(path)}} for path in pair_images)]
    assert chat.invoke([HumanMessage(content=content)]).content == expected
    assert "".join(chunk.content for chunk in chat.stream([HumanMessage(content=content)])) == expected
