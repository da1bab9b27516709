"""GateStats: streaming, mergeable per-class statistics of every SE gate, kept on the model's device.

    stats = GateStats(gates, num_classes=10, device="cuda")
    stats.begin_batch(labels, ids)      # once per batch, before the forward
    stats.update("SE_2_1", s)           # from each gate's hook, s: [N, C]

The fields per gate (shift and moments, permutation tables, histogram, saturation counters, reservoir,
top-k, problem counters) and their layout are listed in `capture.config`.

`update` only copies each gate's batch into one buffer; the next `begin_batch` (or any read) adds the whole
batch of every gate in one set of large kernels, so their count does not grow with the gates. Nothing in
`begin_batch` or `update` synchronises with the host. Memory does not depend on the number of images.
`inputs`, when collected, holds the same statistics of each SE block's squeezed input z (unbounded).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import torch

from analysis.capture.config import COUNTERS, DTYPES, PER_CHANNEL, SAT_HIGH, SAT_LOW, Agree, StatsConfig, field_shapes
from analysis.capture.gates import Gate
from analysis.capture.keys import check_ids, permuted_labels, sample_hash, top_k
from analysis.capture.merging import merge_into
from analysis.capture.ranges import bin_cells, first_batch, histogram_edges
from analysis.capture.reservoir import Reservoir
from analysis.data.labels import check_labels
from analysis.errors import GateValueError, LabelError

class GateStats:
    """Sufficient statistics of every gate per class; see the module docstring for the layout."""

    def __init__(
        self,
        gates: list[Gate],
        config: StatsConfig,
        class_names: list[str] | None = None,
        device: torch.device | str = "cpu",
        state: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Empty statistics, or with `state` (a state_dict's `{gate}/{field}` tensors) those stored."""
        if any(g.channels is None for g in gates):
            raise ValueError("every gate needs a channel count before statistics can be allocated")
        if len({g.name for g in gates}) != len(gates):
            raise ValueError("gate names must be unique")
        self.gates = list(gates)
        self.config = config
        k = config.num_classes
        self.class_names = list(class_names) if class_names else [str(i) for i in range(k)]
        if len(self.class_names) != k:
            raise LabelError(f"{len(self.class_names)} class names given for {k} classes.")
        self.device = torch.device(device)
        self.samples = 0  # images seen, counted on the host from batch shapes
        self._classes = torch.tensor(config.present, device=self.device)  # [K'] the labels that occur, in order
        self.sampler = Reservoir(len(self._classes), config.reservoir, self.device)  # a slot row per class present
        self.agree: Agree | None = None  # set under torchrun, so that every rank calibrates alike
        self._inputs: GateStats | Callable[[], GateStats | None] | None = None
        # the untrained controls collected beside (kind -> weight seed -> statistics; collect(control=...)),
        # written with the run by save_run; not part of the state, merge or describe
        self.controls: dict[str, dict[int, GateStats]] = {}
        self.columns: dict[str, slice] = {}
        for g in self.gates:
            start = next(reversed(self.columns.values())).stop if self.columns else 0
            self.columns[g.name] = slice(start, start + g.channels)
        self._index = {g.name: i for i, g in enumerate(self.gates)}
        self.total = sum(g.channels for g in self.gates)
        # Per channel of all gates side by side: its gate's first channel, its index in the gate, and
        # the gate's width; they place a channel's entries in the gate-after-gate blocks of `fused`.
        widths = torch.tensor([g.channels for g in self.gates])
        self._width = widths.repeat_interleave(widths).to(self.device)
        self._first = (widths.cumsum(0) - widths).repeat_interleave(widths).to(self.device)
        self._local = torch.arange(self.total, device=self.device) - self._first
        self._perms = torch.arange(config.permutations, device=self.device)
        # Entries per channel of the fields stored gate after gate, each gate's block in its file layout.
        sk, pk = config.shards * k, config.permutations * k
        self._rows = {"sum": sk, "sumsq": sk, "perm_sum": pk, "perm_sumsq": pk, "hist": k * (config.bins + 2),
                      "sat_high": k, "sat_low": k, "reservoir": len(self._classes) * config.reservoir + 1}
        self.fused = self._empty() if state is None else self._stored(state)
        # Gates whose shift and edges are set (by their first batch, a merge or a file): host-side.
        self._calibrated = {g.name for g in self.gates if state is not None and self._block("edges", g.name).diff().any()}
        self._batch: dict[str, torch.Tensor] = {}
        self._held = torch.empty(0, self.total, device=self.device)  # this batch's values, all gates side by side
        self._pending: set[str] = set()  # gates whose values this batch holds

    @property
    def inputs(self) -> GateStats | None:
        """The statistics of each SE block's squeezed input z (same gate names), or None; a run
        folder's are read from disk on first access."""
        if callable(self._inputs):
            self._inputs = self._inputs()
        return self._inputs

    @inputs.setter
    def inputs(self, value: GateStats | Callable[[], GateStats | None] | None) -> None:
        self._inputs = value

    def _empty(self, large: bool = True) -> dict[str, torch.Tensor]:
        """Fresh fields; without `large`, only those not stored gate after gate."""
        t, dev, cfg = self.total, {"device": self.device}, self.config
        large_fields = self._rows if large else {}
        return {field: torch.zeros(rows * t, dtype=DTYPES[field], **dev) for field, rows in large_fields.items()} | {
            "count": torch.zeros(len(self.gates), cfg.shards * cfg.num_classes, dtype=torch.int64, **dev),
            "perm_count": torch.zeros(len(self.gates), cfg.permutations * cfg.num_classes, dtype=torch.int64, **dev),
            "top_values": torch.full((t, cfg.topk), -float("inf"), **dev),
            "top_ids": torch.full((t, cfg.topk), -1, dtype=torch.int64, **dev),
            **{field: torch.zeros(t, dtype=torch.int64, **dev) for field in COUNTERS},
            "shift": torch.zeros(t, dtype=torch.float64, **dev),
            "edges": torch.zeros(t, cfg.bins + 1, dtype=torch.float64, **dev),
            "min": torch.full((t,), float("inf"), **dev),
            "max": torch.full((t,), -float("inf"), **dev),
        }

    def _stored(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`fused` from per-gate tensors, checked against the layout; the large fields joined in one
        copy. Raises KeyError for a missing tensor and ValueError for a misshapen one."""
        for g in self.gates:
            for field, shape in self.layout(g.name).items():
                value, dtype = state[f"{g.name}/{field}"], DTYPES[field]
                if value.shape != shape or value.dtype != dtype:
                    raise ValueError(f"{g.name}/{field} is {value.dtype} {tuple(value.shape)}, "
                                     f"expected {dtype} {tuple(shape)}")
        joined = {field: torch.cat([state[f"{g.name}/{field}"].reshape(-1) for g in self.gates]).to(self.device)
                  for field in self._rows}
        joined |= {field: torch.cat([state[f"{g.name}/{field}"] for g in self.gates]).to(self.device)
                   for field in PER_CHANNEL}
        self.fused = self._empty(large=False) | joined
        for g in self.gates:
            for field in ("count", "perm_count", "min", "max", *COUNTERS):
                self.set_gate_tensor(g.name, field, state[f"{g.name}/{field}"])
        return self.fused

    # The reservoir's keys ([K'*R+1] float64, inf: empty) and ids ([K'*R+1] int64, -1: empty), as stored
    # in a run's file. Setting one replaces the sampler rather than writing into it: a copy.copy of
    # these statistics (distributed merging) shares it.
    @property
    def reservoir_keys(self) -> torch.Tensor:
        return self.sampler.keys

    @reservoir_keys.setter
    def reservoir_keys(self, keys: torch.Tensor) -> None:
        self.sampler = Reservoir(len(self._classes), self.config.reservoir, keys=keys, ids=self.sampler.ids)

    @property
    def reservoir_ids(self) -> torch.Tensor:
        return self.sampler.ids

    @reservoir_ids.setter
    def reservoir_ids(self, ids: torch.Tensor) -> None:
        self.sampler = Reservoir(len(self._classes), self.config.reservoir, keys=self.sampler.keys, ids=ids)

    # ------------------------------------------------------------------ streaming

    def begin_batch(self, labels: torch.Tensor, ids: torch.Tensor) -> None:
        """Prepare the per-batch indices every gate's update shares. labels, ids: [N] int64.

        Labels and ids are checked here, on the host, when they arrive on the CPU (as from a
        DataLoader); ids must lie in [0, 2**32 - 2] for top_k's keys.
        """
        self.flush()
        check_labels(labels, self.config.num_classes, self.config.classes)
        check_ids(ids)
        if self.inputs is not None:
            self.inputs.begin_batch(labels, ids)
        n, cfg = labels.shape[0], self.config
        if self._held.shape[0] != n:
            self._held = torch.empty(n, self.total, device=self.device)
        y = labels.to(self.device, torch.int64, non_blocking=True)
        ids = ids.to(self.device, torch.int64, non_blocking=True)
        key, shard_hash = sample_hash(ids, cfg.seed)
        dest_of_sample = self.sampler.add(torch.searchsorted(self._classes, y), key, ids)  # class -> its slot row
        perm_row = self._perms[:, None] * cfg.num_classes + permuted_labels(ids, self._perms, self._classes, cfg.seed)
        self._batch = {
            "y": y,
            "ids": ids,
            "row": (shard_hash % cfg.shards) * cfg.num_classes + y,
            "perm_row": perm_row,  # [P, N]
            "dest": dest_of_sample,
            "ones": torch.ones(n, dtype=torch.int64, device=self.device),
        }
        self.samples += n

    def update(self, name: str, s: torch.Tensor) -> None:
        """Copy one batch of gate values s [N, C] (any float dtype) of gate `name` into the batch's
        buffer, to be added with every other gate's (a copy: the model may change s in place)."""
        self._held[:, self.columns[name]].copy_(s.detach())
        self._pending.add(name)

    def flush(self) -> None:
        """Add the held batch: all gates in one pass when all of them ran, else each alone. A gate's
        first batch sets its shift and histogram range first."""
        if not self._pending:
            return
        pending, self._pending = self._pending, set()
        new = [g for g in self.gates if g.name in pending and g.name not in self._calibrated]
        for columns in [slice(0, self.total)] if len(new) == len(self.gates) else [self.columns[g.name] for g in new]:
            self._calibrate(columns, self._held[:, columns])
        self._calibrated |= {g.name for g in new}
        if len(pending) == len(self.gates):
            self._add(slice(0, len(self.gates)), slice(0, self.total), self._held)
            return
        for i, g in enumerate(self.gates):
            if g.name in pending:
                columns = self.columns[g.name]
                self._add(slice(i, i + 1), columns, self._held[:, columns])

    def _calibrate(self, columns: slice, s32: torch.Tensor) -> None:
        """Set the shift and histogram edges of the channels `columns` from their first batch s32 [N, C]."""
        shift, quantiles = first_batch(s32.double(), self.config.bins)
        if self.agree is not None:
            self.agree(shift, quantiles)
        self.fused["shift"][columns] = shift
        self.fused["edges"][columns] = histogram_edges(quantiles, self.config.bounded)

    def _add(self, gates: slice, columns: slice, s32: torch.Tensor) -> None:  # long: one kernel set per field
        """Add s32 [N, C] float32, the values of the gates `gates` (channels `columns`), to the batch."""
        f, b, cfg = self.fused, self._batch, self.config
        n, c = s32.shape
        g, p = gates.stop - gates.start, cfg.permutations
        first, local, width = self._first[columns], self._local[columns], self._width[columns]
        s64 = s32.double()
        x = s64 - f["shift"][columns]
        xx = x * x
        f["count"][gates].index_add_(1, b["row"], b["ones"].expand(g, n))
        at = (self._rows["sum"] * first + local + b["row"][:, None] * width).flatten()
        f["sum"].index_add_(0, at, x.flatten())
        f["sumsq"].index_add_(0, at, xx.flatten())
        perm_row = b["perm_row"]
        f["perm_count"][gates].index_add_(1, perm_row.flatten(), b["ones"].repeat(p).expand(g, p * n))
        at = (self._rows["perm_sum"] * first + local + perm_row[:, :, None] * width).flatten()
        f["perm_sum"].index_add_(0, at, x.expand(p, n, c).flatten())
        f["perm_sumsq"].index_add_(0, at, xx.expand(p, n, c).flatten())
        cell_of = bin_cells(s64, f["edges"][columns])
        cell = self._rows["hist"] * first + (b["y"][:, None] * width + local) * (cfg.bins + 2) + cell_of
        f["hist"].index_add_(0, cell.flatten(), torch.ones(cell.numel(), dtype=torch.int32, device=s32.device))
        if cfg.bounded:
            at = (self._rows["sat_high"] * first + b["y"][:, None] * width + local).flatten()
            f["sat_high"].index_add_(0, at, (s64 >= SAT_HIGH).int().flatten())
            f["sat_low"].index_add_(0, at, (s64 <= SAT_LOW).int().flatten())
            f["below"][columns] += (s32 < 0).sum(0)
            f["above"][columns] += (s32 > 1).sum(0)
        slot = self._rows["reservoir"] * first + local + b["dest"][:, None] * width
        f["reservoir"].index_copy_(0, slot.flatten(), s32.flatten())
        values = torch.cat([f["top_values"][columns], s32.t()], dim=1)
        ids = torch.cat([f["top_ids"][columns], b["ids"].expand(c, -1)], dim=1)
        f["top_values"][columns], f["top_ids"][columns] = top_k(values, ids, cfg.topk)
        f["nonfinite"][columns] += (~torch.isfinite(s32)).sum(0)
        f["min"][columns] = torch.minimum(f["min"][columns], s32.amin(0))
        f["max"][columns] = torch.maximum(f["max"][columns], s32.amax(0))

    def _block(self, field: str, name: str) -> torch.Tensor:
        """Gate `name`'s part of a field: a view in the file layout."""
        cols = self.columns[name]
        if field in (*PER_CHANNEL, "min", "max"):
            return self.fused[field][cols]
        rows = self._rows[field]
        block = self.fused[field][rows * cols.start : rows * cols.stop]
        return block if field == "hist" else block.view(rows, cols.stop - cols.start)

    def gate_tensors(self, name: str) -> dict[str, torch.Tensor]:
        """One gate's statistics in the layout of the module docstring (views of the large fields)."""
        self.flush()
        f, i, cols = self.fused, self._index[name], self.columns[name]
        return {"count": f["count"][i], "perm_count": f["perm_count"][i]} | {
            field: self._block(field, name) for field in (*self._rows, *PER_CHANNEL)} | {
            field: f[field][cols].sum() for field in COUNTERS} | {"min": f["min"][cols].amin(), "max": f["max"][cols].amax()}

    def layout(self, name: str) -> dict[str, torch.Size]:
        """The shape of each field of one gate in the layout of gate_tensors."""
        return field_shapes(self.config, self.columns[name].stop - self.columns[name].start)

    def set_gate_tensor(self, name: str, field: str, value: torch.Tensor) -> None:
        """Store one gate's field given in the layout of gate_tensors (from a file or a planted run)."""
        shape, dtype = self.layout(name)[field], DTYPES[field]
        if value.shape != shape or value.dtype != dtype:
            raise ValueError(f"{name}/{field} is {value.dtype} {tuple(value.shape)}, expected {dtype} {tuple(shape)}")
        f, cols = self.fused, self.columns[name]
        value = value.to(self.device)
        if field in ("count", "perm_count"):
            f[field][self._index[name]] = value
        elif field in COUNTERS:  # kept on the gate's first channel
            f[field][cols] = 0
            f[field][cols.start] = value
        elif field in ("min", "max"):
            f[field][cols] = value
        else:
            self._block(field, name).copy_(value)
        if field == "edges":
            self._calibrated.add(name)

    def check(self) -> None:
        """Raise GateValueError for NaN/inf gates, gates outside [0, 1] or gates that never fired.

        The one place that reads device counters back to the host: call it after the last batch.
        """
        for g in self.gates:
            t = self.gate_tensors(g.name)
            seen = int(t["count"].sum())
            if seen != self.samples:
                raise GateValueError(f"gate {g.name} ({g.path}) saw {seen} of {self.samples} samples; "
                                     "its module did not run on every forward pass.")
            bad = int(t["nonfinite"])
            if bad:
                raise GateValueError(f"gate {g.name} produced {bad} NaN or infinite values; "
                                     "the input data contains NaN or the model overflowed (try --amp bf16 or none).")
            out = int(t["below"]) + int(t["above"])
            if out:
                raise GateValueError(
                    f"gate {g.name} produced {out} values outside [0, 1] (min {float(t['min']):.4g}, "
                    f"max {float(t['max']):.4g}); {g.path} is not a sigmoid-type gate."
                )
        if self.inputs is not None:
            self.inputs.check()

    # ------------------------------------------------------------------ reading (CPU copies)

    def moments(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(count [S, K] int64, sum [S, K, C], sumsq [S, K, C] float64) of s - shift(name), on the CPU."""
        t, s, k = self.gate_tensors(name), self.config.shards, self.config.num_classes
        c = t["sum"].shape[1]
        return t["count"].view(s, k).cpu(), t["sum"].reshape(s, k, c).cpu(), t["sumsq"].reshape(s, k, c).cpu()

    def shift(self, name: str) -> torch.Tensor:
        """[C] float64: the per-channel shift of the moments (class means are shift + sum / count)."""
        return self.gate_tensors(name)["shift"].cpu()

    def perm_moments(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(count [P, K] int64, sum [P, K, C], sumsq [P, K, C] float64) of s - shift under relabelling
        p = `keys.pseudo_labels(ids, p, config.present, config.seed)`, on the CPU."""
        t, p, k = self.gate_tensors(name), self.config.permutations, self.config.num_classes
        c = t["perm_sum"].shape[1]
        return (t["perm_count"].view(p, k).cpu(), t["perm_sum"].reshape(p, k, c).cpu(),
                t["perm_sumsq"].reshape(p, k, c).cpu())

    def histogram(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(counts [K, C, B + 2] int64, edges [C, B + 1] float64): cell 0 counts values below
        edges[:, 0], cell B + 1 those at or above edges[:, -1], cell b the bin [edges[b-1], edges[b])."""
        t, k = self.gate_tensors(name), self.config.num_classes
        counts = t["hist"].view(k, -1, self.config.bins + 2).cpu().long()
        return counts, t["edges"].cpu()

    def saturation(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(high [K, C], low [K, C]) int64: exact counts of s >= 0.9 and s <= 0.1 (zeros unless bounded)."""
        t = self.gate_tensors(name)
        return t["sat_high"].cpu().long(), t["sat_low"].cpu().long()

    def reservoir(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(values [n, C] float32, labels [n], ids [n]) of the kept samples, ordered by key."""
        self.flush()
        slots, rows, ids = self.sampler.kept()
        return self._block("reservoir", name)[:-1].cpu()[slots], self._classes.cpu()[rows], ids

    def top(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(values [C, k], ids [C, k]) of the samples that open each channel most; id -1 = empty."""
        t = self.gate_tensors(name)
        return t["top_values"].cpu(), t["top_ids"].cpu()

    # ------------------------------------------------------------------ combining and storing

    def merge(self, other: GateStats, *, inputs: bool = True) -> GateStats:
        """Add `other` (statistics of disjoint samples) into self; the result equals the union's
        (the histogram's exactly when both were calibrated alike, see `ranges`). With `inputs`,
        the squeeze-input statistics are merged too. See `merging.merge_into`."""
        merge_into(self, other, inputs=inputs)
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Flat CPU tensors `{gate}/{field}`, for safetensors (without `inputs`, stored beside)."""
        out = {"_reservoir/keys": self.reservoir_keys.cpu(), "_reservoir/ids": self.reservoir_ids.cpu()}
        for g in self.gates:
            for field, value in self.gate_tensors(g.name).items():
                out[f"{g.name}/{field}"] = value.cpu().contiguous()
        return out

    def describe(self) -> dict:
        """JSON-able description that, with state_dict, rebuilds these statistics."""
        return {"config": asdict(self.config), "gates": [asdict(g) for g in self.gates],
                "class_names": self.class_names, "samples": self.samples}

    @classmethod
    def from_state(cls, description: dict, tensors: dict[str, torch.Tensor]) -> GateStats:
        """Inverse of (describe, state_dict); raises KeyError/ValueError on a mismatched file."""
        gates = [Gate(**g) for g in description["gates"]]
        stats = cls(gates, StatsConfig(**description["config"]), description["class_names"], state=tensors)
        stats.samples = int(description["samples"])
        stats.reservoir_keys = tensors["_reservoir/keys"]
        stats.reservoir_ids = tensors["_reservoir/ids"]
        return stats

    def to(self, device: torch.device | str) -> GateStats:
        """Move every tensor to `device` (e.g. to the CPU before merging across machines)."""
        self.flush()
        self.device = torch.device(device)
        self.sampler.to(device)
        self._held = self._held.to(device)
        self._first, self._local, self._width, self._perms, self._classes = (
            t.to(device) for t in (self._first, self._local, self._width, self._perms, self._classes))
        self.fused = {field: value.to(device) for field, value in self.fused.items()}
        if self.inputs is not None:
            self.inputs.to(device)
        return self
