"""Run metrics: JSON lines (every record), CSV per record kind, and the recipe's ``log:``
backends (TensorBoard events, Weights & Biases)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

WANDB_ID_FILE = "wandb_id"  # the W&B run a resumed run continues
REPLACED_FILE = "metrics.replaced.jsonl"  # records a resume dropped from metrics.jsonl (it writes them again)


class TensorBoardSink:
    """Scalars under ``tb/``; a resumed run purges the events after its checkpoint's step."""

    def __init__(self, run_dir: Path, resume_step: int | None):
        from torch.utils.tensorboard import SummaryWriter

        purge = resume_step + 1 if resume_step is not None else None
        self.writer = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=purge)

    def log(self, kind: str, step: int, values: dict) -> None:
        for key, value in values.items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def wandb_module():
    """The wandb package, or a RecipeError saying how to get it (checked before a run starts)."""
    try:
        import wandb
    except ImportError as error:
        from advrl.recipe import RecipeError

        raise RecipeError("log.wandb is true but wandb is not installed: `pip install wandb`, or set log.wandb=false.") from error
    return wandb


class WandbSink:
    """Scalars to a Weights & Biases run (``WANDB_MODE=offline`` writes it locally, to sync later).
    Plotted against the logged ``step``, so records repeated after a resume overlay the first ones
    instead of being dropped for a non-increasing W&B step; a resumed run continues its W&B run."""

    def __init__(self, run_dir: Path, resume_step: int | None, config: dict, project: str, entity: str | None,
                 group: str | None, name: str):
        wandb = wandb_module()
        id_file = run_dir / WANDB_ID_FILE
        run_id = id_file.read_text().strip() if resume_step is not None and id_file.exists() else None
        self.run = wandb.init(project=project, entity=entity, group=group, name=name, config=config, dir=str(run_dir),
                              id=run_id, resume="allow" if run_id else None)
        id_file.write_text(str(self.run.id))
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")

    def log(self, kind: str, step: int, values: dict) -> None:
        scalars = {f"{kind}/{key}": value for key, value in values.items() if isinstance(value, (int, float))}
        if scalars:
            self.run.log({"step": step, **scalars})

    def close(self) -> None:
        self.run.finish()


def make_sinks(run_dir: Path, recipe, resume_step: int | None) -> list:
    """The backends the recipe's ``log:`` section asks for."""
    from omegaconf import OmegaConf

    log = recipe.log
    sinks = [TensorBoardSink(run_dir, resume_step)] if log.tensorboard else []
    if log.wandb:
        config = OmegaConf.to_container(recipe, resolve=True)
        name = f"{recipe.name}-seed{recipe.seed}-{run_dir.name}"
        sinks.append(WandbSink(run_dir, resume_step, config, log.wandb_project, log.wandb_entity,
                               log.wandb_group or str(recipe.name), name))
    return sinks


class MetricsLogger:
    """Writes ``metrics.jsonl``, one CSV per record kind (``train``, ``eval``, and ``episode`` for
    online runs) in a run directory, and hands every record to the ``sinks`` (``make_sinks``).

    On resume, records after the checkpoint's step are dropped (they will be produced
    again), so the files read as one uninterrupted run; the dropped lines are appended to
    ``metrics.replaced.jsonl``, so that resuming from an older checkpoint (``previous.pt``, or
    step 0) never loses a record.
    """

    def __init__(self, run_dir: Path, resume_step: int | None = None, sinks: list | None = None):
        self.run_dir = run_dir
        self.jsonl = run_dir / "metrics.jsonl"
        self.rows: dict[str, list[dict]] = {"train": [], "eval": [], "episode": []}
        self.columns: dict[str, list[str]] = {"train": [], "eval": [], "episode": []}
        if resume_step is not None and self.jsonl.exists():
            kept, replaced = [], []
            for line in self.jsonl.read_text().splitlines():
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut by the interruption
                    continue
                (kept if record["step"] <= resume_step else replaced).append(record)
            if replaced:
                with open(run_dir / REPLACED_FILE, "a") as handle:
                    handle.write("".join(json.dumps(r) + "\n" for r in replaced))
            self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in kept))
            for record in kept:
                self.rows.setdefault(record["kind"], []).append(record)
        elif self.jsonl.exists():
            self.jsonl.unlink()
        for kind in self.rows:
            self._rewrite_csv(kind)
        self.sinks = list(sinks or [])

    def _csv_path(self, kind: str) -> Path:
        return self.run_dir / f"{kind}.csv"

    def _rewrite_csv(self, kind: str) -> None:
        rows = self.rows[kind]
        columns = list(dict.fromkeys(k for row in rows for k in row if k != "kind"))
        self.columns[kind] = columns
        with open(self._csv_path(kind), "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows({k: v for k, v in row.items() if k != "kind"} for row in rows)

    def log(self, kind: str, step: int, values: dict[str, float]) -> None:
        """Append a record of ``kind`` (train, eval, episode, or another: its CSV appears with it)."""
        record = {"kind": kind, "step": step, **values}
        self.rows.setdefault(kind, [])
        self.columns.setdefault(kind, [])
        with open(self.jsonl, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        self.rows[kind].append(record)
        if set(record) - {"kind"} - set(self.columns[kind]):
            self._rewrite_csv(kind)  # a new column: rewrite with the wider header (rare)
        else:
            with open(self._csv_path(kind), "a", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=self.columns[kind], restval="", extrasaction="ignore")
                writer.writerow(record)
        for sink in self.sinks:
            sink.log(kind, step, values)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
