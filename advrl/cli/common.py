"""What every command shares: the result line and argument types checked before any work."""

from __future__ import annotations

import argparse
import json


def print_result(result) -> int:
    """One JSON line summarising a finished run (the last line a script can parse)."""
    summary = {"run_dir": str(result.run_dir), "steps": result.steps, "final_return": result.final_return}
    if result.final_score is not None:
        summary["final_normalized_score"] = result.final_score
    if result.final_evaluation and "score_mean" in result.final_evaluation:  # eval.final_episodes episodes
        summary["final_eval_normalized_score"] = result.final_evaluation["score_mean"]
    print(json.dumps(summary))
    return 0


def device_name(name: str) -> str:
    """--device values, checked as train.device is (the message replaces a traceback)."""
    from advrl.device import device_error

    error = device_error(name)
    if error:
        raise argparse.ArgumentTypeError(f"{name} {error}")
    return name


NOISE_SPACE_CHOICES = ("raw", "standardised")  # advrl.evaluation.NOISE_SPACES (not imported: it imports gymnasium)


def noise_levels(text: str) -> list[float]:
    """--obs-noise 0,0.05,0.1: finite stds >= 0, each once, in the order given."""
    levels = []
    for part in text.split(","):
        try:
            level = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not a number (give stds like 0,0.05,0.1)") from None
        if not 0 <= level < float("inf"):
            raise argparse.ArgumentTypeError(f"{part} is not a finite std >= 0")
        if level not in levels:
            levels.append(level)
    return levels


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value
