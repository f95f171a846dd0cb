"""`rsforge detect`: the change mask of a whole scene, tile by tile."""

from __future__ import annotations

from pathlib import Path

MASK_SUFFIXES = (".tif", ".tiff", ".png")


def _detect_command(args) -> int:
    from rsforge.core.model import RSForgeModel
    from rsforge.geo.rasters import has_rasterio, mask_polygons
    from rsforge.geo.tiling import detect

    # Checked first: never after a long run.
    if Path(args.out).suffix.lower() not in MASK_SUFFIXES:
        raise ValueError(f"--out {args.out}: a mask is written losslessly, as {' or '.join(MASK_SUFFIXES)} "
                         "(JPEG would blur its class values)")
    if args.geojson and not has_rasterio():
        raise ValueError("--geojson needs rasterio to vectorise the mask: pip install 'rsforge-geo[rasterio]'")
    model = RSForgeModel.from_pretrained(args.model, plugins=args.plugins, device=args.device)
    head = model.mask_heads[0] if model.mask_heads else None
    if head is not None and head.reads_instruction and args.prompt is None:
        print(f"prompt: {head.config.default_prompt!r} (the head's default; --prompt says what to look for)")
    stats = detect(model, args.before, args.after, args.out, tile=args.tile, overlap=args.overlap,
                   batch=args.batch, threshold=args.threshold, prompt=args.prompt)
    print(f"wrote {args.out} ({stats.width}x{stats.height}, {stats.tiles} tiles)")
    print(stats.summary())
    if args.geojson:
        print(f"wrote {mask_polygons(args.out, args.geojson)} polygons to {args.geojson}")
    return 0


def add_commands(cli) -> None:
    p = cli.add_parser(
        "detect", help="change mask of a before/after scene of any size, by overlapping tiles",
        description="Run a saved mask model over two co-registered scenes (GeoTIFF, PNG, JPEG) in overlapping "
        "tiles blended by a linear window, a strip of tiles at a time, and write a uint8 mask (0/255, or class "
        "ids for multi-class heads) by windows. GeoTIFF output keeps the before image's CRS and geotransform. "
        "Large scenes need rasterio (pip install 'rsforge-geo[rasterio]'); without it images are read whole.",
    )  # fmt: skip
    p.add_argument("--model", required=True, help="saved model directory with a mask head")
    p.add_argument("--before", required=True, help="first-date image")
    p.add_argument("--after", required=True, help="second-date image (same size, CRS and geotransform)")
    p.add_argument("--out", required=True, help="output mask (.tif: GeoTIFF; .png)")
    p.add_argument("--tile", type=int, help="tile side in native pixels (default: the scale the model was trained "
                   "at, its recipe's train.crop, else its image size; tiles are resized to the image size)")
    p.add_argument("--overlap", type=int, help="pixels shared by neighbouring tiles (default: 32, at most a quarter "
                   "of the tile)")
    p.add_argument("--prompt", help="what a text-guided mask head (text_mask) looks for, e.g. 'new buildings' "
                   "(default: the head's default_prompt, printed); other heads ignore it")
    p.add_argument("--batch", type=int, default=8, help="tiles per forward pass (default 8)")
    p.add_argument("--threshold", type=float, default=0.5, help="change probability threshold (default 0.5)")
    p.add_argument("--geojson", help="also write the changed regions as polygons (needs rasterio)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.set_defaults(func=_detect_command)

