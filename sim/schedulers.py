"""Batch schedulers for one replica, a registry as in Vidur: ``vllm``, ``sarathi``, ``static``.

A scheduler looks at the replica's ``waiting`` queue (FCFS, preempted requests at the front) and
its ``running`` list and returns the next batch: a list of (request, new tokens, cached tokens).
KV memory is paged (:class:`KVCache`, 16-token blocks); admission keeps a watermark of free
blocks; when a decode step finds no free block, the most recently admitted running request is
preempted by recompute (its blocks freed, its prompt and generated tokens prefilled again later).
"""

from __future__ import annotations

from array import array
from collections import deque
from dataclasses import dataclass, field
from math import ceil

BLOCK_TOKENS = 16


@dataclass(eq=False, slots=True)  # identity: requests are compared by `in` / `remove` on every iteration
class Request:
    rid: int
    arrival: float
    prompt: int
    output: int
    computed: int = 0           # tokens whose KV is cached
    target: int = 0             # tokens to prefill before the next token (prompt + generated)
    generated: int = 0
    blocks: int = 0
    preemptions: int = 0
    scheduled: float = float("nan")
    first_token: float = float("nan")
    completion: float = float("nan")
    last_token: float = float("nan")
    tbt: array = field(default_factory=lambda: array("d"))  # gaps between tokens, 8 bytes each

    @property
    def prefilling(self) -> bool:
        return self.computed < self.target


class KVCache:
    """Paged KV memory of one replica: ``total`` blocks of :data:`BLOCK_TOKENS` tokens."""

    def __init__(self, total_blocks: int, watermark: float = 0.01):
        self.total = int(total_blocks)
        self.free = self.total
        self.watermark = int(ceil(watermark * self.total))

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // BLOCK_TOKENS)

    def grow(self, r: Request, tokens: int, watermark: bool = False) -> bool:
        """Make room for ``tokens`` cached tokens of ``r``; False (nothing taken) if it does not fit."""
        need = self.blocks_for(tokens) - r.blocks
        if need <= 0:
            return True
        if self.free - need < (self.watermark if watermark else 0):
            return False
        self.free -= need
        r.blocks += need
        return True

    def release(self, r: Request) -> None:
        self.free += r.blocks
        r.blocks = 0

    @property
    def used_fraction(self) -> float:
        return 1.0 - self.free / self.total if self.total else 0.0


@dataclass
class Scheduler:
    """Common state and policies; subclasses implement :meth:`schedule`."""

    kv: KVCache
    max_batch: int = 128
    max_tokens: int = 4096
    waiting: deque = field(default_factory=deque)
    running: list = field(default_factory=list)

    def admit(self, r: Request, now: float) -> None:
        if r.scheduled != r.scheduled:  # NaN: first time
            r.scheduled = now
        r.target = r.prompt + r.generated
        self.running.append(r)

    def preempt_last(self, keep: Request | None = None) -> bool:
        """Preempt the most recently admitted running request (not ``keep``) by recompute."""
        for victim in reversed(self.running):
            if victim is not keep:
                self.running.remove(victim)
                self.kv.release(victim)
                victim.computed = 0
                victim.preemptions += 1
                self.waiting.appendleft(victim)
                return True
        return False

    def decode_slots(self, batch: list) -> None:
        """Add one decode token for every running request past its prefill, preempting on full KV."""
        i = 0
        while i < len(self.running):
            r = self.running[i]
            if r.prefilling:
                i += 1
                continue
            if self.kv.grow(r, r.computed + 1):
                batch.append((r, 1, r.computed))
                i += 1
            elif not self.preempt_last(keep=r):
                break
            else:  # the victim may have had its token scheduled already
                batch[:] = [b for b in batch if b[0] in self.running]
                i = self.running.index(r)

    def schedule(self, now: float) -> list:
        raise NotImplementedError


class VLLMScheduler(Scheduler):
    """vLLM (v0) continuous batching: prefill-only batches of waiting requests first (within the
    batch-size and batched-token caps and the KV watermark), otherwise one decode-only batch."""

    def schedule(self, now: float) -> list:
        batch, tokens = [], 0
        while self.waiting and len(self.running) < self.max_batch:
            r = self.waiting[0]
            need = r.prompt + r.generated
            if tokens + need > self.max_tokens or not self.kv.grow(r, need, watermark=True):
                break
            self.waiting.popleft()
            self.admit(r, now)
            batch.append((r, need, 0))
            tokens += need
        if batch:
            return batch
        self.decode_slots(batch)
        return batch


class SarathiScheduler(Scheduler):
    """Sarathi-Serve chunked prefill: every running decode gets its token, then prefills (started
    ones first, then new admissions) fill the rest of the token budget in chunks: mixed batches."""

    def schedule(self, now: float) -> list:
        batch: list = []
        self.decode_slots(batch)
        budget = self.max_tokens - len(batch)
        for r in self.running:
            if budget <= 0:
                break
            if r.prefilling:
                q = min(budget, r.target - r.computed)
                if self.kv.grow(r, r.computed + q):
                    batch.append((r, q, r.computed))
                    budget -= q
        while budget > 0 and self.waiting and len(self.running) < self.max_batch:
            r = self.waiting[0]
            q = min(budget, r.prompt + r.generated)
            if not self.kv.grow(r, q, watermark=True):
                break
            self.waiting.popleft()
            self.admit(r, now)
            batch.append((r, q, 0))
            budget -= q
        return batch


class StaticScheduler(Scheduler):
    """Static batching: up to ``max_batch`` waiting requests are admitted together (KV reserved for
    prompt + output), prefilled in one iteration and decoded until the last one finishes; no
    admission meanwhile."""

    def schedule(self, now: float) -> list:
        batch: list = []
        if not self.running:
            while self.waiting and len(self.running) < self.max_batch:
                r = self.waiting[0]
                if not self.kv.grow(r, r.prompt + r.output):
                    break
                self.waiting.popleft()
                self.admit(r, now)
                batch.append((r, r.prompt, 0))
            return batch
        return [(r, 1, r.computed) for r in self.running]


SCHEDULERS = {"vllm": VLLMScheduler, "sarathi": SarathiScheduler, "static": StaticScheduler}
