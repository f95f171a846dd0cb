"""`rsforge data synth` and `rsforge data check`. Readers are imported when a command runs."""

from __future__ import annotations


def _synth_command(args) -> int:
    from rsforge.datasets.synth import generate

    generate(args.out, n=args.n, seed=args.seed, size=args.size)
    print(f"wrote {args.n} synthetic pairs to {args.out}")
    return 0


def _check_command(args) -> int:
    from rsforge.datasets.check import check_dataset, format_report
    from rsforge.datasets.common import SPLITS

    if args.format == "synth":
        raise ValueError("check a synthetic dataset's folder with the format of the part to read "
                         "(levir_cc, changechat; scenes/: coco_captions, class_folders; objects/: rsvqa, rsvg, dota)")
    spec = args.plugins.registry.get("dataset", args.format, path="--format")
    options = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        options[key] = value
    config = spec.config(name=args.format, root=str(args.root), **options)
    report = check_dataset(spec.load_factory(), config, [args.split] if args.split else SPLITS, args.max_images)
    print(format_report(report, args.root, args.format))
    return 0 if report.usable else 1


def _split_dota_command(args) -> int:
    from rsforge.datasets.dota_split import SplitOptions, split_dota

    options = SplitOptions(subsize=args.subsize, gap=args.gap, rate=args.rate, thresh=args.thresh)
    summary = split_dota(args.src, args.out, options)
    print(f"wrote {summary.patches} patches of {summary.scenes} scenes to {args.out}"
          + (f"; {len(summary.skipped)} scenes skipped (see the warnings)" if summary.skipped else ""))
    return 0 if summary.patches else 1


def add_commands(cli) -> None:
    data = cli.add_parser("data", help="datasets").add_subparsers(dest="data_command", metavar="ACTION")
    p = data.add_parser("synth", help="write a synthetic bi-temporal dataset (LEVIR-CD folders + LEVIR-CC JSON)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--n", type=int, default=600, help="number of before/after pairs (default 600)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.set_defaults(func=_synth_command)
    p = data.add_parser(
        "check", help="read a dataset with its reader; print statistics and the problems found (no training)",
        description="Read a dataset with a registered reader and print samples per split, tasks, answer "
        "lengths, references per sample, a sample of image sizes and every problem found (missing or "
        "unreadable files, empty answers). Exit code 0 when some split is usable, 1 when nothing is.",
    )  # fmt: skip
    p.add_argument("root", help="dataset folder")
    p.add_argument("--format", required=True, help="dataset reader, e.g. levir_cc, rsvqa (see `rsforge plugins`)")
    p.add_argument("--split", help="check only this split (default: train, val and test)")
    p.add_argument("--set", action="append", metavar="K=V", help="reader option, e.g. images_dir=imgs; repeatable")
    p.add_argument("--max-images", type=int, default=50, help="images decoded per split (default 50)")
    p.set_defaults(func=_check_command)
    p = data.add_parser(
        "split-dota", help="split DOTA scenes into overlapping patches, as DOTA_devkit's ImgSplit does",
        description="Split SRC/images with SRC/labelTxt into OUT/images, OUT/labelTxt and OUT/list/<split>.txt "
        "(one per split list of SRC, else all.txt), the rules of DOTA_devkit's ImgSplit_multi_process.py: "
        "patches <id>__<rate>__<left>___<up>.png, instances clipped to each patch, a piece of less than THRESH "
        "of its instance marked difficult 2. OUT is written whole or not at all.",
    )  # fmt: skip
    p.add_argument("src", help="DOTA folder with images/ and labelTxt/")
    p.add_argument("out", help="output folder (new, or a previous split-dota output, which is replaced)")
    p.add_argument("--subsize", type=int, default=1024, help="patch side in pixels (default 1024)")
    p.add_argument("--gap", type=int, default=200, help="overlap of neighbouring patches in pixels (default 200)")
    p.add_argument("--rate", type=float, default=1.0, help="resize the scenes by this factor first (default 1)")
    p.add_argument("--thresh", type=float, default=0.7,
                   help="a cut instance keeps its difficult flag when more than this part of it is in the patch, "
                   "else it is marked 2 (default 0.7)")
    p.set_defaults(func=_split_dota_command)
