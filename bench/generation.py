"""Batched generation: rsforge's `HFCausalLM.generate` (GenerationOptions in, a `Generation` with
texts, token ids, mask, log-probs and finish reasons out) against calling `transformers`' `generate`
directly on the same packed prompt embeddings, greedy and sampled.

Both paths pack the prompts with `HFCausalLM.generation_inputs` (the visual tokens placed, left
padded) inside the timed call, use the decoder's stop ids, and draw the same tokens (greedy, or
sampled from the same seed): `same_tokens` says whether they did. Tokens/s counts the tokens that
count (up to and including each row's stop token), so the ratio is rsforge's overhead on top of
`transformers` (per-row stopping and streaming hooks, per-token log-probs, decoding the texts).
Each round runs both paths back to back, in turns first (`pairs.py`), after a warm-up round; the ratio
is per round, transformers' time over rsforge's. One torch thread (see `pairs.torch_threads`). Absolute
numbers depend on the machine; the ratio is what to compare. `--quick` runs a tiny configuration (used
by the test suite so it cannot rot).

    python bench/generation.py [--quick] [--rounds N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
from pairs import describe, interleave, paired, ratio, timed, torch_threads
from tqdm import tqdm

from rsforge.core.atomic import atomic_write_text
from rsforge.core.interfaces import GenerationOptions
from rsforge.core.sample import Turn
from rsforge.decoders.configs import HFCausalLMConfig
from rsforge.decoders.hf_causal_lm import HFCausalLM

WORDS = "a new building was built in the top left there is no change road trees cut down".split()
MODES = {"greedy": {}, "sampled": {"temperature": 0.8, "top_p": 0.95}}
SEED = 0


def build_decoder(hidden: int, layers: int) -> HFCausalLM:
    config = HFCausalLMConfig(
        name="hf_causal_lm", tokenizer="word_level",
        config={"model_type": "llama", "hidden_size": hidden, "intermediate_size": 2 * hidden,
                "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 4,
                "max_position_embeddings": 512},
    ).prepare(WORDS)
    torch.manual_seed(0)
    return HFCausalLM(config).eval()


def rsforge_generate(dec: HFCausalLM, visual: torch.Tensor, convs, new_tokens: int, mode: dict) -> torch.Tensor:
    """The tokens that count, pad elsewhere."""
    out = dec.generate(visual, convs, GenerationOptions(max_new_tokens=new_tokens, **mode))
    return out.token_ids.masked_fill(~out.mask, dec.pad_id)


def transformers_generate(dec: HFCausalLM, visual: torch.Tensor, convs, new_tokens: int, mode: dict) -> torch.Tensor:
    """Plain `generate(inputs_embeds=..., attention_mask=...)`; pad after each row's first stop token."""
    sampling = {"do_sample": True, "top_k": 0, **mode} if mode else {"do_sample": False}
    ids = dec.lm.generate(**dec.generation_inputs(visual, convs), max_new_tokens=new_tokens,
                          eos_token_id=dec.stop_ids, pad_token_id=dec.pad_id, **sampling)
    is_stop = torch.isin(ids, torch.tensor(dec.stop_ids)).long()
    return ids.masked_fill(is_stop.cumsum(1) - is_stop > 0, dec.pad_id)


def compare(dec: HFCausalLM, batch: int, visual_tokens: int, new_tokens: int, rounds: int, mode: dict) -> dict:
    """Tokens/s of each path and the per-round ratio, the two run back to back in each round (`pairs.py`)."""
    visual = torch.randn(batch, visual_tokens, dec.hidden_size, generator=torch.Generator().manual_seed(0))
    convs = [[Turn("user", "describe the changes")]] * batch
    outputs = {}

    def path(name: str, fn):
        def call() -> None:
            torch.manual_seed(SEED)  # the same draws for both paths when sampling
            outputs[name] = fn(dec, visual, convs, new_tokens, mode)

        return timed(call)

    with torch.inference_mode():
        seconds = interleave({"rsforge": path("rsforge", rsforge_generate),
                              "transformers": path("transformers", transformers_generate)}, rounds)
    ours, theirs = outputs["rsforge"], outputs["transformers"]
    same = ours.shape == theirs.shape and bool(torch.equal(ours, theirs))
    is_stop = torch.isin(theirs, torch.tensor(dec.stop_ids)).long()
    tokens = int(((is_stop.cumsum(1) - is_stop) == 0).sum())
    return {"tokens": tokens, "same_tokens": same,
            "rsforge_tok_s": tokens / statistics.median(seconds["rsforge"]),
            "transformers_tok_s": tokens / statistics.median(seconds["transformers"]),
            "spread": paired(seconds["transformers"], seconds["rsforge"])}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, two rounds (for the test suite)")
    parser.add_argument("--rounds", type=int, help="timed rounds per row after a warm-up (default 2 quick, 7 full)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    hidden, layers, visual_tokens, new_tokens, rounds, batches = (
        (32, 1, 8, 4, 2, [1, 4]) if args.quick else (256, 4, 64, 32, 7, [1, 8, 32])
    )
    rounds = args.rounds or rounds
    rows = []
    with torch_threads(1):
        dec = build_decoder(hidden, layers)
        print(f"decoder: llama hidden {hidden}, {layers} layers; {visual_tokens} visual tokens, up to {new_tokens} "
              f"new tokens; 1 thread; {rounds} rounds")
        print(f"{'mode':>7} {'batch':>5} {'rsforge tok/s':>14} {'transformers tok/s':>19} {'same tokens':>11}  ratio")
        for mode_name, mode in tqdm(MODES.items(), desc="generation", disable=args.quick, leave=False):
            for batch in batches:
                measured = compare(dec, batch, visual_tokens, new_tokens, rounds, mode)
                spread = measured.pop("spread")
                rows.append({"mode": mode_name, "batch": batch, **measured, **ratio("vs_transformers", spread)})
                print(f"{mode_name:>7} {batch:>5} {measured['rsforge_tok_s']:>14.0f} "
                      f"{measured['transformers_tok_s']:>19.0f} {'yes' if measured['same_tokens'] else 'NO':>11}  "
                      f"{describe(spread)}")
    result = {"benchmark": "generation", "quick": args.quick, "threads": 1, "rounds": rounds, "rows": rows}
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
