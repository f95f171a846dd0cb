"""Helpers for calling the server from Python: images as data URLs, chat messages that carry them.

    from openai import OpenAI
    from rsforge.serve.client import image_message
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    client.chat.completions.create(model=..., messages=[image_message("describe the changes",
                                                                       "before.png", "after.png")])
"""

from __future__ import annotations

import base64
import io
import mimetypes
from pathlib import Path

from PIL import Image


def data_url(image: str | Path | bytes | Image.Image) -> str:
    """A base64 data URL of an image file, encoded bytes, or a PIL image (sent as PNG)."""
    if isinstance(image, Image.Image):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        raw, media_type = buf.getvalue(), "image/png"
    elif isinstance(image, bytes):
        raw, media_type = image, "image/png"  # the server sniffs the real format from the bytes
    else:
        raw = Path(image).read_bytes()
        media_type = mimetypes.guess_type(str(image))[0] or "image/png"
    return f"data:{media_type};base64,{base64.b64encode(raw).decode()}"


def image_message(text: str, *images: str | Path | bytes | Image.Image) -> dict:
    """A user message with `text` and the images in order (before, after)."""
    parts = [{"type": "image_url", "image_url": {"url": data_url(image)}} for image in images]
    return {"role": "user", "content": [{"type": "text", "text": text}, *parts]}
