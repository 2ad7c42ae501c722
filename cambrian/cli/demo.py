"""``cambrian demo``: train and evaluate Cambrian-nano end to end on this machine (offline)."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Train and evaluate Cambrian-nano end to end, offline, from the packaged pretrained parts
(SmolLM2-135M-Instruct + EfficientNet-Lite0 + DINOv2-S/14, SVA connector on an 8x8 query grid).

Steps (each timed, with progress bars):
  1. model     build Cambrian-nano
  2. scenes    render train/test scenes (pybullet); from the test scenes CV-Bench-Synth (official rules,
               up to 2/2/6/4 questions per image instead of 2/1/1/1: --set cvbench_max_per_image=...) and
               synth-attribute (look-up questions: the colour of the only sphere, ...); grounding targets
               (per-cell object words from the scenes' masks, colour + shape words on easy-VQA images) and
               packed multi-turn questions for stage 2
  3. features  frozen-tower features of every training image, computed once
  4. ground    grounding (stage: ground): connector only, each visual token pulled onto the LLM's input
               embeddings of the words for what its cell shows; the LLM does not run (a low-compute warm start)
  5. stage1    optional (--set stage1_samples=N): connector on scene captions, LLM frozen
  6. stage2    the LLM on packed questions, learning to read the grounded tokens
  7. eval      CV-Bench-Synth (official 2D/3D/overall formula), synth-attribute and easy-VQA three times:
               with the question's own image, with another image's visual tokens under the same prompt, and
               with no image; gold-answer loss probe (own vs other image); nearest-word decoding of the
               grounded tokens of held-out scenes
  8. likelihood the same multiple-choice questions and conditions answered by option likelihood (the option
               the model finds most likely; not the official score, reported apart; on with --quick,
               --set likelihood=true on the default run)
  9. chat      one answer about a held-out easy-VQA image, and the `cambrian chat` command to ask more
 10. report    OUT/results.json (image_use_accuracy[bench][task] = {own, other, blind}, and their 95%
               bootstrap intervals and paired own-other / own-blind differences; likelihood_accuracy and
               the like apart), OUT/report.md, OUT/loss.png, OUT/accuracy.png (with error bars),
               OUT/likelihood.png; the model in OUT/checkpoint

Presets: --quick (a smoke run: few scenes and steps; its own-vs-other gap on easy-VQA colour+shape questions
must be >= 15 points), the default, and --long (issue 20's spatial recipe: position words in the grounding
targets, worked Relation / Depth answers, direct position lookups in stage 2). Expected time on a 2-core
CPU: under 4 minutes with --quick, about 18 minutes (default), about 39 minutes with --long, plus the
likelihood step: about 1.5 minutes with --quick, an estimated 11 or more in the default run. Uses CUDA
with bf16 autocast when available (--device auto). The first run also converts the packaged GGUF LLM once
(cached under .cache/).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = DESCRIPTION
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument(
        "--quick",
        action="store_true",
        help="short smoke run (< 4 min on 2 CPU cores, + ~1.5 min for the likelihood step)",
    )
    p.add_argument(
        "--long",
        action="store_true",
        help="the spatial recipe of issue 20 (position words in the grounding targets, worked Relation / Depth "
        "answers, direct position lookups in stage 2): about 39 min on 2 CPU cores",
    )
    p.add_argument(
        "--out", default="runs/demo", help="output folder (default runs/demo; a previous demo folder is reused)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:1 ...")
    p.add_argument("--train-scenes", type=int, default=None, help="training scenes to render")
    p.add_argument("--test-scenes", type=int, default=None, help="test scenes (CV-Bench-Synth is built from them)")
    p.add_argument(
        "--steps", type=int, default=None, help="cap on stage-2 optimizer steps (default: one pass over the data)"
    )
    p.add_argument("--stage2-lr", type=float, default=None, help="stage-2 learning rate (LLM and connector)")
    p.add_argument("--easyvqa-test-images", type=int, default=None, help="easy-VQA test images (all their questions)")
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any demo setting (repeatable), e.g. --set stage1_samples=600 --set scene_variants=4 to "
        "scale the run up on a GPU; the settings are the fields of cambrian.demo.config.DemoConfig "
        "and are saved in results.json",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--hops",
        metavar="RUN_DIR",
        default=None,
        help="train nothing: print which hop of the worked CV-Bench-Synth answers of a finished "
        "`--set reasoning=true` run fails (lookup, order, letter; per condition; cambrian.demo.hops)",
    )


def run(args) -> int:
    from ..demo.config import make_config, parse_settings
    from ..demo.pipeline import run_demo
    from ..typed import ConfigError

    if args.hops:
        from ..demo.hops import hops_table, run_hops

        print(hops_table(run_hops(args.hops)))
        return 0

    over = {
        "out": args.out,
        "seed": args.seed,
        "device": args.device,
        "train_scenes": args.train_scenes,
        "test_scenes": args.test_scenes,
        "stage2_lr": args.stage2_lr,
        "easyvqa_test_images": args.easyvqa_test_images,
    }
    # --set wins over the preset and the named flags (null included); mistakes are one `error:` line (ConfigError)
    if args.quick and args.long:
        raise ConfigError("--quick and --long are two presets: choose one")
    preset = "quick" if args.quick else "long" if args.long else "default"
    cfg = make_config(preset=preset, settings=parse_settings(args.settings), **over)
    if args.steps is not None:
        cfg.stage2_max_samples = args.steps * cfg.stage2_batch
    if args.no_progress:
        cfg.progress = False
    from ..demo.pipeline import console_summary

    print(console_summary(run_demo(cfg, preset=preset)))
    return 0
