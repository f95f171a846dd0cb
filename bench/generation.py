"""Batched greedy generation: rsforge's KV-cache loop against `transformers`' own `generate` on the
same model and inputs, and against recomputing the whole sequence at every step (no cache).

Prints tokens/s per batch size and the ratios; absolute numbers depend on the machine, the ratios
are what to compare. `--quick` runs a tiny configuration (used by the test suite so it cannot rot).

    python bench/generation.py [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from rsforge.core.data.schema import Turn
from rsforge.decoders.configs import HFCausalLMConfig
from rsforge.decoders.hf_causal_lm import HFCausalLM

WORDS = "a new building was built in the top left there is no change road trees cut down".split()


def build_decoder(hidden: int, layers: int) -> HFCausalLM:
    config = HFCausalLMConfig(
        name="hf_causal_lm", tokenizer="word_level",
        config={"model_type": "llama", "hidden_size": hidden, "intermediate_size": 2 * hidden,
                "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 4,
                "max_position_embeddings": 512},
    ).prepare(WORDS)
    torch.manual_seed(0)
    return HFCausalLM(config).eval()


def no_cache_generate(dec: HFCausalLM, visual: torch.Tensor, convs, new_tokens: int) -> None:
    embeds, attn, _ = dec._pack(visual, convs, generation=True)
    embed = dec.lm.get_input_embeddings()
    for _ in range(new_tokens):
        token = dec.lm(inputs_embeds=embeds, attention_mask=attn).logits[:, -1].argmax(-1)
        embeds = torch.cat([embeds, embed(token[:, None])], dim=1)
        attn = torch.cat([attn, attn.new_ones(attn.shape[0], 1)], dim=1)


def hf_generate(dec: HFCausalLM, visual: torch.Tensor, convs, new_tokens: int) -> None:
    embeds, attn, _ = dec._pack(visual, convs, generation=True)
    dec.lm.generate(inputs_embeds=embeds, attention_mask=attn, max_new_tokens=new_tokens,
                    min_new_tokens=new_tokens, do_sample=False, pad_token_id=dec.pad_id)


def rsforge_generate(dec: HFCausalLM, visual: torch.Tensor, convs, new_tokens: int) -> None:
    # No stop ids, so every row runs the full length, as in the other two.
    stop_ids, dec.stop_ids = dec.stop_ids, []
    try:
        dec.generate(visual, convs, max_new_tokens=new_tokens)
    finally:
        dec.stop_ids = stop_ids


def tokens_per_second(fn, dec, batch: int, visual_tokens: int, new_tokens: int, repeats: int) -> float:
    visual = torch.randn(batch, visual_tokens, dec.hidden_size, generator=torch.Generator().manual_seed(0))
    convs = [[Turn("user", "describe the changes")]] * batch
    with torch.inference_mode():
        fn(dec, visual, convs, 2)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            fn(dec, visual, convs, new_tokens)
        elapsed = time.perf_counter() - start
    return batch * new_tokens * repeats / elapsed


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (for the test suite)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    hidden, layers, visual_tokens, new_tokens, repeats, batches = (
        (32, 1, 8, 4, 1, [1, 4]) if args.quick else (256, 4, 64, 32, 3, [1, 8, 32])
    )
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    dec = build_decoder(hidden, layers)
    rows = []
    print(f"decoder: llama hidden {hidden}, {layers} layers; {visual_tokens} visual tokens, {new_tokens} new tokens")
    print(f"{'batch':>5} {'rsforge tok/s':>14} {'HF generate':>12} {'no cache':>10} {'vs HF':>7} {'vs no cache':>12}")
    for batch in batches:
        ours = tokens_per_second(rsforge_generate, dec, batch, visual_tokens, new_tokens, repeats)
        hf = tokens_per_second(hf_generate, dec, batch, visual_tokens, new_tokens, repeats)
        plain = tokens_per_second(no_cache_generate, dec, batch, visual_tokens, new_tokens, repeats)
        rows.append({"batch": batch, "rsforge_tok_s": ours, "hf_generate_tok_s": hf, "no_cache_tok_s": plain,
                     "ratio_vs_hf_generate": ours / hf, "ratio_vs_no_cache": ours / plain})
        print(f"{batch:>5} {ours:>14.0f} {hf:>12.0f} {plain:>10.0f} {ours / hf:>6.2f}x {ours / plain:>11.2f}x")
    result = {"benchmark": "generation", "quick": args.quick, "threads": torch.get_num_threads(), "rows": rows}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
