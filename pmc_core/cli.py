"""Command line: `python -m pmc_core run ...` runs PMC headless and writes a run folder."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from pmc_core.config import ConfigError, MethodConfig, ModelConfig, OptimConfig, RunConfig, SamplingConfig

_GROUPS = {"model": ModelConfig, "method": MethodConfig, "sampling": SamplingConfig, "optim": OptimConfig}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_group_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per config field, defaults taken from the dataclasses so the CLI and pages agree."""
    for group, cls in _GROUPS.items():
        options = parser.add_argument_group(group)
        for item in dataclasses.fields(cls):
            if group == "model" and item.name == "source":
                continue
            default = item.default
            flag = "--method" if (group, item.name) == ("method", "name") else _flag(item.name)
            if isinstance(default, bool):
                options.add_argument(flag, dest=f"{group}.{item.name}", action=argparse.BooleanOptionalAction,
                                     default=default)
            else:
                kind = type(default) if default is not None else str
                options.add_argument(flag, dest=f"{group}.{item.name}", type=kind, default=default,
                                     metavar=item.name.upper(), help=f"default: {default}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pmc_core", description="PMC Lab: Partial Model Collapse, headless")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run PMC and write a run folder")
    run.add_argument("--model", default="embedded", help="embedded, tiny, a hub id or a local folder")
    run.add_argument("--forget", default=None, help="forget prompts (.jsonl/.csv); default: the built-in set")
    run.add_argument("--forget-count", type=int, default=None, help="use only the first N forget prompts")
    run.add_argument("--retain", default=None, help="retain pairs (.jsonl/.csv); default: the built-in set")
    run.add_argument("--iterations", type=int, default=RunConfig.iterations)
    run.add_argument("--seed", type=int, default=RunConfig.seed)
    run.add_argument("--eval-every", type=int, default=RunConfig.eval_every)
    run.add_argument("--out", default=None, help="run folder (default: a new folder under $PMC_LAB_RUNS or ./runs)")
    run.add_argument("--save-adapter", action="store_true", help="also save the final LoRA adapter in PEFT format")
    _add_group_flags(run)
    return parser


def config_from_args(args: argparse.Namespace) -> RunConfig:
    values = vars(args)
    fixed = {"model": {"source": args.model}}
    groups = {
        group: cls(**fixed.get(group, {}), **{f.name: values[f"{group}.{f.name}"] for f in dataclasses.fields(cls)
                                                if f"{group}.{f.name}" in values})
        for group, cls in _GROUPS.items()
    }
    return RunConfig(iterations=args.iterations, seed=args.seed, eval_every=args.eval_every, **groups)


def run_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pmc_core import storage
    from pmc_core.models import load_model
    from pmc_core.prompts import load_builtin, load_prompts
    from pmc_core.run import PMCRun

    config = config_from_args(args)
    forget = load_prompts(args.forget) if args.forget else load_builtin("forget")
    if args.forget_count is not None:
        forget = forget[: args.forget_count]
    retain = load_prompts(args.retain) if args.retain else load_builtin("retain")
    out = Path(args.out) if args.out else storage.new_run_dir(label=f"{config.method.name}-{Path(args.model).name}")
    model = config.model
    print(f"loading model {model.source!r} ...", file=sys.stderr)
    loaded = load_model(model.source, model.adapter, model.device, model.dtype, model.trust_remote_code)
    print(f"loaded in {loaded.load_seconds:.1f} s on {loaded.device}; run folder: {out}", file=sys.stderr)
    run = PMCRun(loaded, forget, retain, config, out_dir=out)
    with tqdm(total=config.iterations, desc="PMC", unit="it", file=sys.stderr) as bar:
        run.start()
        for _ in range(config.iterations):
            record = run.step()
            bar.set_postfix(forget_nll=f"{record['forget_nll']:.2f}", picked=f"{record['mean_picked_score']:.2f}",
                            retain_nll=f"{record['retain_nll']:.2f}" if record["retain_nll"] is not None else "-")
            bar.update(1)
    summary = run.finish()
    if args.save_adapter:
        run.save_adapter(out / "adapter")
    print(json.dumps(summary, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    from pmc_core.models import ModelLoadError
    from pmc_core.prompts import PromptFileError
    from pmc_core.run import RunInputError, TrainingDivergedError

    args = build_parser().parse_args(argv)
    try:
        return run_command(args)
    except (ConfigError, ModelLoadError, PromptFileError, RunInputError, TrainingDivergedError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
