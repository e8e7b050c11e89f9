"""Run metrics: JSON lines (every record), CSV per record kind, and TensorBoard events."""

from __future__ import annotations

import csv
import json
from pathlib import Path


class MetricsLogger:
    """Writes ``metrics.jsonl``, one CSV per record kind (``train``, ``eval``, and ``episode`` for
    online runs) and ``tb/`` in a run directory.

    On resume, records after the checkpoint's step are dropped (they will be produced
    again), so the files read as one uninterrupted run.
    """

    def __init__(self, run_dir: Path, resume_step: int | None = None, tensorboard: bool = True):
        self.run_dir = run_dir
        self.jsonl = run_dir / "metrics.jsonl"
        self.rows: dict[str, list[dict]] = {"train": [], "eval": [], "episode": []}
        self.columns: dict[str, list[str]] = {"train": [], "eval": [], "episode": []}
        if resume_step is not None and self.jsonl.exists():
            kept = []
            for line in self.jsonl.read_text().splitlines():
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut by the interruption
                    continue
                if record["step"] <= resume_step:
                    kept.append(record)
            self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in kept))
            for record in kept:
                self.rows.setdefault(record["kind"], []).append(record)
        elif self.jsonl.exists():
            self.jsonl.unlink()
        for kind in self.rows:
            self._rewrite_csv(kind)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = resume_step + 1 if resume_step is not None else None
            self.writer = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=purge)

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
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
