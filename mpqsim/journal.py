"""An append-only JSON-lines journal of finished work, for long jobs that must resume.

The first line holds the settings that identify the job (written whole, then renamed: never half a
header); every later line is one finished record, keyed by a field. Opening an existing journal
checks the settings (a mismatch names every setting that differs), drops a last record cut by a
kill (once: the file is rewritten without it) and skips unreadable lines, whose work is redone.
Records are flushed and fsynced as they are added, so ``kill -9`` loses at most the record being
written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mpqsim import InputError


class Journal:
    """Records of ``path`` by ``key`` field; ``what`` names the job in messages."""

    def __init__(self, path, settings: dict, key: str = "key", what: str = "job"):
        self.path = Path(path)
        self.settings = settings
        self.key = key
        self.records: dict[str, dict] = {}
        if self.path.exists() and self.path.stat().st_size:
            self._open(what)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps({"settings": self.settings}) + "\n")
            os.replace(tmp, self.path)

    def _open(self, what: str) -> None:
        raw = self.path.read_text()
        lines = raw.splitlines()
        try:
            head = json.loads(lines[0])
        except (json.JSONDecodeError, IndexError):
            head = None
        if not isinstance(head, dict) or "settings" not in head:
            raise InputError(f"{self.path}: the settings line (the first) is damaged, e.g. cut by a kill while it "
                             f"was written ({len(lines) - 1} later line(s)); delete the file to start afresh or use "
                             "a new output folder")
        old = head["settings"] if isinstance(head["settings"], dict) else {}
        if old != self.settings:
            diff = sorted(k for k in set(old) | set(self.settings) if old.get(k) != self.settings.get(k))
            raise InputError(f"{self.path} was written by a {what} with other settings (differ: "
                             + "; ".join(f"{k}: {old.get(k)!r} there, {self.settings.get(k)!r} now" for k in diff)
                             + "); use a new output folder or the same settings")
        if not raw.endswith("\n"):  # a record cut by a kill: drop it once, keep the rest
            lines = lines[:-1]
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("\n".join(lines) + "\n")
            os.replace(tmp, self.path)
        for line in lines[1:]:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # unreadable: that work is redone
                continue
            if isinstance(rec, dict) and self.key in rec:
                self.records[rec[self.key]] = rec

    def get(self, key: str):
        return self.records.get(key)

    def add(self, rec: dict, default=None) -> None:
        """Append one finished record (``default`` serialises values json does not know)."""
        with open(self.path, "a") as f:
            f.write(json.dumps(rec, default=default) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records[rec[self.key]] = rec
