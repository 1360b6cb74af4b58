"""The ``zoo`` command line. ``list``, ``info`` and ``plugins`` never import MindSpore."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from contracts import KINDS
from registry import ComponentEntry, RegistryError, UnknownComponentError, default_registry


def table(rows: list[Sequence[str]], header: Sequence[str]) -> str:
    """Left-aligned columns; the last column is not padded."""
    rows = [list(map(str, header)), *[list(map(str, r)) for r in rows]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip()
             for r in rows]
    return "\n".join(lines)


def _type_name(annotation: object) -> str:
    name = getattr(annotation, "__name__", None)
    return name if name and not getattr(annotation, "__args__", None) else str(annotation).replace(
        "typing.", "")


def describe(entry: ComponentEntry) -> str:
    lines = [f"{entry.kind} {entry.name}", f"  plugin:  {entry.plugin}", f"  summary: {entry.summary}"]
    if entry.aliases:
        lines.append(f"  aliases: {', '.join(entry.aliases)}")
    fields = entry.config.model_fields
    if fields:
        rows = [(name, _type_name(f.annotation), repr(f.default), f.description or "")
                for name, f in fields.items()]
        lines += ["", "options:", table(rows, ("name", "type", "default", "description"))]
    if entry.config.__doc__ and entry.config.__doc__ is not entry.config.__base__.__doc__:
        lines += ["", inspect.cleandoc(entry.config.__doc__)]
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    registry = default_registry()
    infos = registry.list(args.kind, args.pattern)
    if infos:
        print(table([(i.kind, i.name + (f" ({', '.join(i.aliases)})" if i.aliases else ""), i.plugin,
                      i.summary) for i in infos], ("kind", "name", "plugin", "summary")))
    else:
        print("no components match" + (f" {args.pattern!r}" if args.pattern else ""))
    if registry.broken_plugins:
        print(f"({registry.broken_plugins} plugin(s) failed to load; see `zoo plugins`)", file=sys.stderr)
    return 0 if infos else 1


def cmd_info(args: argparse.Namespace) -> int:
    registry = default_registry()
    if args.kind:
        entries = [registry.get(args.kind, args.name)]
    else:
        entries = registry.find(args.name)
        if not entries:
            raise UnknownComponentError(None, args.name, registry.names(), broken_plugins=registry.broken_plugins)
    print("\n\n".join(describe(e) for e in entries))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    plugins = default_registry().plugins
    rows = [(p.name, f"{p.package} {p.version}", p.contract or "-",
             "ok: " + ", ".join(p.components) if p.ok else f"BROKEN: {p.error}") for p in plugins]
    print(table(rows, ("plugin", "package", "contract", "status")))
    return 0 if all(p.ok for p in plugins) else 1


def parse_options(pairs: list[str]) -> dict[str, object]:
    """``["shift=3", "spacing=diffusers"]`` -> ``{"shift": 3, "spacing": "diffusers"}``
    (values are read as JSON where they parse, else kept as strings)."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--option {pair!r}: expected KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def cmd_check(args: argparse.Namespace) -> int:
    from hypothesis import Phase, settings

    from zoo.components import load_component
    from zoo.testkit import PROPERTIES, run_properties

    options = parse_options(args.option)

    def make():
        return load_component(args.kind, args.name, args.weights, **options)

    try:
        make()
    except (RegistryError, ValueError, FileNotFoundError):
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's factory may raise anything
        print(f"zoo: error: cannot build {args.kind} {args.name!r}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 1
    settings.register_profile("zoo-check", max_examples=args.examples, deadline=None,
                              phases=[p for p in Phase if p is not Phase.explain])
    settings.load_profile("zoo-check")
    failed = 0
    print(f"checking {args.kind} {args.name!r} against the {args.kind} contract")
    for outcome in run_properties(args.kind, make):
        print(f"{'PASS' if outcome.passed else 'FAIL'}  {outcome.prop.id}: {outcome.prop.title}")
        if not outcome.passed:
            failed += 1
            print(textwrap.indent(outcome.error, "      "))
    print(f"{len(PROPERTIES[args.kind]) - failed} passed, {failed} failed")
    return 1 if failed else 0


def parse_lora(text: str) -> dict[str, object]:
    """``FILE[:STRENGTH]`` -> ``{"path": FILE, "strength": STRENGTH}`` (strength 1 when left out)."""
    path, sep, strength = text.rpartition(":")
    if sep and path:
        try:
            return {"path": path, "strength": float(strength)}
        except ValueError:
            pass
    return {"path": text, "strength": 1.0}


def check_stats_path(path: str) -> Path:
    stats = Path(path)
    if stats.suffix != ".json" or not stats.absolute().parent.is_dir():
        raise ValueError(f"--stats {path}: expected a .json file in an existing folder")
    return stats


def cmd_generate(args: argparse.Namespace) -> int:
    from zoo import distributed
    from zoo.assembly import build, plan
    from zoo.conditioning import check_image_request
    from zoo.export import check_output_path, export_video
    from zoo.images import load_image
    from zoo.pipeline import as_prompts, check_inputs, generation_settings
    from zoo.pretrained import resolve_model, with_files
    from zoo.residency import choose_policy
    from zoo.stages import StageLog

    worker = distributed.under_msrun()
    group = distributed.group() if worker else None  # msrun's scheduler process serves the job from here
    lead = group is None or group.rank == 0  # the process that talks to the user and writes the video
    if args.devices > 1 and not worker:
        distributed.check_devices(args.devices)
    as_prompts(args.prompt)
    image = None if args.image is None else load_image(args.image)
    args.model = args.model or ("hunyuanvideo-tiny" if image is None else "hunyuanvideo-i2v-tiny")
    out = check_output_path(args.out) if lead else None
    spec, defaults = resolve_model(args.model)
    spec = with_files(spec, args.transformer, args.vae, args.text_encoder, args.text_encoder_2,
                      [parse_lora(lora) for lora in args.lora])
    scheduler, backbone = spec.scheduler.model_copy(), spec.backbone.model_copy()
    scheduler.name = args.scheduler or scheduler.name
    backbone.name = args.backbone or (distributed.PARALLEL_BACKBONE if worker or args.devices > 1 else backbone.name)
    if args.shift is not None:
        scheduler.options = {**scheduler.options, "shift": args.shift}
    backbone.options = {**backbone.options, **parse_options(args.backbone_option)}
    spec = spec.replace(scheduler=scheduler, backbone=backbone)
    settings = generation_settings(defaults, height=args.height, width=args.width, num_frames=args.frames,
                                   num_inference_steps=args.steps)
    checked = plan(spec)
    check_inputs(checked.configs["autoencoder"], settings["num_frames"], settings["height"],
                 settings["width"], settings["num_inference_steps"])
    check_image_request(spec.backbone.name, checked.configs["backbone"], image is not None)
    stats = check_stats_path(args.stats) if args.stats else None
    if args.devices > 1 and not worker:
        distributed.check_split(checked.configs["backbone"], args.devices)
        return distributed.launch(args.argv, args.devices, args.port)
    policy, reason = choose_policy(args.memory, checked)
    if lead:
        print(f"loading {args.model}; memory: {policy} ({reason})", file=sys.stderr)
    log = StageLog(verbose=lead, path=stats if lead else None, extra={"memory": policy})
    pipe = distributed.build(checked, defaults, policy, log, group) if worker else build(checked, defaults, policy, log)
    result = pipe(args.prompt, negative_prompt=args.negative_prompt, guidance_scale=args.guidance,
                  true_cfg_scale=args.true_cfg, seed=args.seed, progress=lead, image=image, **settings)
    if not lead:
        return 0
    export_video(result.frames[0], out, fps=args.fps)
    frames, height, width = result.frames.shape[1:4]
    print(f"wrote {out} ({frames} frames, {width}x{height})")
    return 0


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="zoo", description="HunyuanVideo components on MindSpore.")
    sub = main.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="registered components")
    p.add_argument("pattern", nargs="?", help="glob on the name, e.g. 'flow-*'")
    p.add_argument("--kind", choices=KINDS)
    p.set_defaults(run=cmd_list)
    p = sub.add_parser("info", help="a component's summary and options")
    p.add_argument("name")
    p.add_argument("--kind", choices=KINDS)
    p.set_defaults(run=cmd_info)
    p = sub.add_parser("generate", help="generate a video from a prompt",
                       description="Generate a video. Settings left out take the model preset's defaults "
                                   "(hunyuanvideo-tiny: 9 frames of 64x64, 10 steps).")
    p.add_argument("prompt")
    p.add_argument("--image", metavar="FILE", help="an 8-bit RGB image to animate (PNG, JPEG, ...), for an "
                                                   "image-to-video model (hunyuanvideo-i2v, skyreels-v1-i2v, "
                                                   "hunyuanvideo-i2v-tiny); resized to --height x --width")
    p.add_argument("--model", help="a preset (hunyuanvideo, hunyuanvideo-tiny, hunyuanvideo-i2v, "
                                   "hunyuanvideo-i2v-tiny, skyreels-v1-i2v, skyreels-v1-tiny), a diffusers pipeline "
                                   "folder, or a Hugging Face repo id in the local cache (default: "
                                   "hunyuanvideo-tiny, with --image hunyuanvideo-i2v-tiny)")
    p.add_argument("--frames", type=int, help="number of frames, 4k+1")
    p.add_argument("--height", type=int, help="a multiple of 16")
    p.add_argument("--width", type=int, help="a multiple of 16")
    p.add_argument("--steps", type=int, help="denoising steps")
    p.add_argument("--guidance", type=float, default=6.0, help="embedded guidance scale (default: %(default)s)")
    p.add_argument("--shift", type=float, help="the scheduler's timestep shift")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    p.add_argument("--negative-prompt", help="used with --true-cfg above 1")
    p.add_argument("--true-cfg", type=float, default=1.0, help="true classifier-free guidance scale; above 1 "
                                                              "it runs the backbone twice a step")
    p.add_argument("--scheduler", help="a registered scheduler to use instead, e.g. flow-match-heun")
    p.add_argument("--backbone", help="a registered backbone to use instead, with the model's weights, "
                                      "e.g. hunyuanvideo-transformer-fbcache")
    p.add_argument("--backbone-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a backbone option (repeatable), e.g. threshold=0.1")
    p.add_argument("--transformer", metavar="FILE", help="a single .safetensors file for the transformer "
                   "(diffusers or original/ComfyUI names, bf16/fp16/fp8/scaled fp8); --model supplies the configs")
    p.add_argument("--vae", metavar="FILE", help="a single .safetensors file for the VAE")
    p.add_argument("--text-encoder", metavar="FILE", help="a single .safetensors file for the LLaMA text encoder "
                   "(e.g. llava_llama3_fp16.safetensors)")
    p.add_argument("--text-encoder-2", metavar="FILE", help="a single .safetensors file for CLIP-L "
                   "(e.g. clip_l.safetensors)")
    p.add_argument("--lora", action="append", default=[], metavar="FILE[:STRENGTH]",
                   help="a LoRA adapter (repeatable): diffusers/PEFT, original or kohya/musubi keys; strength 1 "
                        "when left out")
    p.add_argument("--out", default="video.mp4", help=".mp4 (H.264), .gif, or a folder for PNG frames "
                                                       "(default: %(default)s)")
    p.add_argument("--fps", type=float, default=24, help="(default: %(default)s)")
    p.add_argument("--memory", choices=("auto", "low", "fast"), default="auto",
                   help="low: each component in memory only while it works; fast: all at once; auto: low "
                        "when the checkpoints would not fit in the memory available (default: %(default)s)")
    p.add_argument("--stats", metavar="FILE.json",
                   help="write each stage's wall time, peak RSS and bytes read to this JSON file")
    p.add_argument("--devices", type=int, default=1, metavar="N",
                   help="split the backbone across N processes on this machine (msrun is started for you; "
                        "across machines, run this command under your own msrun instead)")
    p.add_argument("--port", type=int, help="msrun's scheduler port with --devices (default: a free one)")
    p.set_defaults(run=cmd_generate)
    p = sub.add_parser("check", help="run the contract kit on a registered component")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("name")
    p.add_argument("--weights", help="a weights folder for the component")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a component option (repeatable); values are read as JSON where they parse")
    p.add_argument("--examples", type=int, default=20, help="hypothesis examples per property")
    p.set_defaults(run=cmd_check)
    p = sub.add_parser("plugins", help="installed plugin packages, broken ones with their error")
    p.set_defaults(run=cmd_plugins)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    # MindSpore's and transformers' import-time notices are not for the command line's user.
    os.environ.setdefault("GLOG_v", "3")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    args = parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what msrun's workers run with --devices
    try:
        return args.run(args)
    except (RegistryError, ValueError, OSError) as exc:
        print(f"zoo: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `zoo info x | head`: the reader has gone, which is fine
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
