"""`rsforge convert --from FORMAT SRC OUT`: a published checkpoint as an rsforge model folder."""

from __future__ import annotations

from pathlib import Path

FORMATS = {
    "lavis-eva": "LAVIS's bare eva_vit_g.pth: OUT becomes a vision-tower folder for an hf_vision encoder "
                 "(the LAVIS blocks, no final norm, CLIP preprocessing)",
    "hf-instructblip": "a Hugging Face InstructBLIP folder (Vicuna or FlanT5), e.g. Salesforce/instructblip-vicuna-7b",
    "hf-blip2": "a Hugging Face BLIP-2 folder (OPT or FlanT5), e.g. Salesforce/blip2-opt-2.7b",
    "lavis": "a LAVIS BLIP-2 / InstructBLIP .pth (with --llm, its Hugging Face LLM folder; --vision eva_vit_g.pth "
             "when the checkpoint holds no visual_encoder)",
    "deltavlm": "DeltaVLM's checkpoint_best.pth (with --llm, its Vicuna-7B v1.5 folder; --vision eva_vit_g.pth for "
                "the frozen EVA blocks it does not hold)",
}


def _parts_writer(args, src: Path):
    from rsforge.convert import deltavlm, hf_blip, lavis

    if args.format in ("lavis", "deltavlm"):
        options = {"llm": Path(args.llm) if args.llm else None, "vision": Path(args.vision) if args.vision else None,
                   "vision_heads": args.vision_heads, "qformer_heads": args.qformer_heads,
                   "qformer_tokenizer": args.qformer_tokenizer}
        if args.format == "lavis":
            return lambda folder: lavis.convert(src, folder, vision_depth=args.vision_depth or lavis.EVA_G_DEPTH,
                                                **options)
        if args.vision_depth is not None:
            raise ValueError("--vision-depth: DeltaVLM's depth is that of the blocks it fine-tuned (37, 38: 39)")
        return lambda folder: deltavlm.convert(src, folder, **options)
    for option in ("llm", "vision", "vision_heads", "vision_depth", "qformer_heads", "qformer_tokenizer"):
        if getattr(args, option) is not None:
            raise ValueError(f"--{option.replace('_', '-')}: only for --from lavis or deltavlm (a {args.format} "
                             "folder holds it)")
    return lambda folder: hf_blip.convert(src, folder, args.format)


def _convert_eva(args, src: Path) -> int:
    import yaml

    from rsforge.convert.lavis import EVA_G_DEPTH, convert_eva

    for option in ("llm", "vision", "qformer_heads", "qformer_tokenizer"):
        if getattr(args, option) is not None:
            raise ValueError(f"--{option.replace('_', '-')}: not for --from lavis-eva (a bare EVA-ViT-g)")
    encoder = convert_eva(src, Path(args.out).absolute(), heads=args.vision_heads,
                          depth=args.vision_depth or EVA_G_DEPTH)
    print(f"wrote {args.out}, the tower LAVIS runs; an rsforge encoder reads it as\n"
          + yaml.safe_dump({"encoder": encoder}, sort_keys=False, default_flow_style=None))
    return 0


def _convert_command(args) -> int:
    from rsforge.convert.folder import write_model_folder

    src = Path(args.src)
    if not src.exists():
        raise FileNotFoundError(f"{src}: not found")
    print(f"converting {src} ({args.format}) -> {args.out}")
    if args.format == "lavis-eva":
        return _convert_eva(args, src)
    out = write_model_folder(args.out, _parts_writer(args, src), name=args.name or src.stem, plugins=args.plugins)
    print(f"wrote {out}: RSForgeModel.from_pretrained('{out}') loads it, `rsforge serve {out}` serves it")
    return 0


def add_commands(cli) -> None:
    p = cli.add_parser(
        "convert", help="turn a published checkpoint into an rsforge model folder",
        description="Check a published checkpoint key by key against the class that defines it, split it into "
        "rsforge parts (vision tower, Q-Former, language model, tokenizers, image preprocessing) and write an "
        "rsforge model folder: recipe.yaml + model.safetensors + the parts' files. Nothing is written unless "
        "the converted model assembles. Formats: " + "; ".join(f"{k}: {v}" for k, v in FORMATS.items()))
    p.add_argument("--from", dest="format", required=True, choices=sorted(FORMATS), help="the checkpoint's format")
    p.add_argument("src", help="the checkpoint (a folder or a file, as the format says)")
    p.add_argument("out", help="the model folder to write (must not exist, or be empty)")
    p.add_argument("--name", help="the model's name in its recipe (default: SRC's name)")
    lavis = p.add_argument_group("LAVIS-based checkpoints (--from lavis, --from deltavlm)")
    lavis.add_argument("--llm", help="the Hugging Face folder of the LLM it was trained with (copied into OUT)")
    lavis.add_argument("--vision", help="EVA-ViT-g weights (eva_vit_g.pth) when the checkpoint has no visual_encoder")
    lavis.add_argument("--vision-heads", type=int, help="EVA attention heads (default: width / 88, as EVA-g)")
    lavis.add_argument("--vision-depth", type=int, help="EVA blocks LAVIS builds from --vision (default: 39, "
                       "create_eva_vit_g's depth: eva_vit_g.pth's 40th block is never run)")
    lavis.add_argument("--qformer-heads", type=int, help="Q-Former attention heads (default: width / 64, as BERT)")
    lavis.add_argument("--qformer-tokenizer", help="BERT tokenizer folder for InstructBLIP's instruction "
                       "(default: the hub's bert-base-uncased)")
    p.set_defaults(func=_convert_command)
