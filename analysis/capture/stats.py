"""GateStats: streaming, mergeable per-class statistics of every SE gate, kept on the model's device.

    stats = GateStats(gates, StatsConfig(num_classes=10), device="cuda")
    for x, y, ids in loader:
        stats.begin_batch(y, ids)
        model(x)                        # each gate's hook calls stats.update(name, s), s: [N, C]
        stats.end_batch()
    stats.finish()                      # after the last batch; then read, merge or save

The fields (moments, permutation tables, histogram, saturation counters, reservoir, top-k, problem
counters), their layout and merge rules are the table of `capture.fields`.

`update` only copies a gate's batch into one buffer; `end_batch` adds the batch of every gate in
one set of large kernels, so their count does not grow with the gates. Nothing in `begin_batch`,
`update` or `end_batch` synchronises with the host, and memory does not depend on the number of
images. Reads, merges and saves need every batch added: none open and none waiting for the
calibration (`finish` adds those); otherwise they raise StatsStateError.

Calibration: each channel's shift (moments are of x - shift, so narrow gates keep their digits) and
histogram edges come from the `config.calibration` samples of smallest id among the first that many
samples each process sees (gathered from every process by `gather` under torchrun). The batches
before it are held raw and added once it is set. With data in increasing id order, as `collect` and
torchrun's strided shards give it, these are the data's first samples, so one process and several
calibrate alike and every statistic, the histogram included, is the same.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Callable, NamedTuple

import torch

from analysis.capture.config import SAT_HIGH, SAT_LOW, Gather, StatsConfig
from analysis.capture.fields import ELEMENTWISE, Layout, Merge
from analysis.capture.gates import Gate
from analysis.capture.keys import check_ids, permuted_labels, sample_hash, top_k
from analysis.capture.merging import combine, combine_sampled, moved_to
from analysis.capture.ranges import bin_cells, shift_and_quantiles, histogram_edges
from analysis.capture.reservoir import Reservoir
from analysis.data.labels import check_labels
from analysis.errors import GateValueError, LabelError, StatsMismatchError, StatsStateError

RESERVOIR_KEYS, RESERVOIR_IDS = "_reservoir/keys", "_reservoir/ids"  # the sampler's state in a run's file
# Reduces a tensor in place across processes by a merge rule (add, min or max): distributed.merge_ranks.
AllReduce = Callable[[torch.Tensor, Merge], None]


class _Batch(NamedTuple):
    """One batch as the hooks gave it: labels [N], ids [N] int64, values [N, all channels] float32,
    and the gates that fired."""

    labels: torch.Tensor
    ids: torch.Tensor
    values: torch.Tensor
    fired: frozenset[str]


class GateStats:
    """Sufficient statistics of every gate per class; see the module docstring."""

    def __init__(  # long: checks, then the layout and the per-batch helpers
        self,
        gates: list[Gate],
        config: StatsConfig,
        class_names: list[str] | None = None,
        device: torch.device | str = "cpu",
        *,
        inputs: GateStats | None = None,
        gather: Gather | None = None,
        state: dict[str, torch.Tensor] | None = None,
        samples: int = 0,
    ) -> None:
        """Empty statistics, or with `state` (a state_dict) those stored, of `samples` images.
        `inputs`: the statistics of each SE block's squeezed input z (same gates), fed and merged
        along; `gather`: how processes share their calibration candidates (None: one process)."""
        if any(g.channels is None for g in gates):
            raise ValueError("every gate needs a channel count before statistics can be allocated")
        if len({g.name for g in gates}) != len(gates):
            raise ValueError("gate names must be unique")
        if inputs is not None and inputs.gates != list(gates):
            raise StatsMismatchError("squeeze-input statistics must have the gates of the statistics they sit beside.")
        self.gates, self.config, self.inputs, self.gather = list(gates), config, inputs, gather
        k = config.num_classes
        self.class_names = list(class_names) if class_names else [str(i) for i in range(k)]
        if len(self.class_names) != k:
            raise LabelError(f"{len(self.class_names)} class names given for {k} classes.")
        self.device = torch.device(device)
        self.layout = Layout(config, [g.channels for g in self.gates])
        self.columns = {g.name: cols for g, cols in zip(self.gates, self.layout.columns)}
        # the untrained controls collected beside (kind -> weight seed -> statistics; collect(control=...)),
        # written with the run by save_run; not part of the state, merge or describe
        self.controls: dict[str, dict[int, GateStats]] = {}
        self._index = {g.name: i for i, g in enumerate(self.gates)}
        self._classes = torch.tensor(config.present, device=self.device)  # [K'] the labels that occur, in order
        self._perms = torch.arange(config.permutations, device=self.device)
        self._calibrated = False  # shift and edges set (by a calibration, a merge or set_tensor)
        self.sampler: Reservoir | None = None  # one slot row per class present, shared by all gates
        if config.keeps("reservoir"):
            self.sampler = Reservoir(len(self._classes), config.reservoir, self.device)
        self.fused = self.layout.empty(self.device)
        for key in [] if state is None else self._state_keys():
            self.set_tensor(key, state[key])
        self.samples = samples  # images added, counted on the host from batch shapes
        self._calibrated = self._calibrated and samples > 0
        self._open: tuple[torch.Tensor, torch.Tensor] | None = None  # (labels, ids) of the batch begun
        self._held = torch.empty(0, self.layout.total, device=self.device)  # its values, all gates side by side
        self._fired: set[str] = set()  # gates whose values it holds
        self._waiting: list[_Batch] = []  # batches seen before the calibration, added once it is set

    def _state_keys(self) -> list[str]:
        """The keys of state_dict: the sampler's, then `{gate}/{field}` for every kept field."""
        sampler = [] if self.sampler is None else [RESERVOIR_KEYS, RESERVOIR_IDS]
        return sampler + [f"{g.name}/{field}" for g in self.gates for field in self.layout.fields]

    def set_tensor(self, key: str, value: torch.Tensor) -> None:
        """Store one tensor of a state_dict in place (from a file, or a planted run); ValueError for
        another shape or dtype. Setting a calibration field (shift, edges) marks the statistics calibrated."""
        if key in (RESERVOIR_KEYS, RESERVOIR_IDS):
            target = self.sampler.keys if key == RESERVOIR_KEYS else self.sampler.ids
        else:
            name, _, field = key.rpartition("/")
            target = self.layout.gate_view(self.fused, field, self._index[name])
            self._calibrated |= self.layout.fields[field].merge is Merge.CALIBRATION
        if value.shape != target.shape or value.dtype != target.dtype:
            raise ValueError(f"{key} is {value.dtype} {tuple(value.shape)}, expected {target.dtype} {tuple(target.shape)}")
        target.copy_(value)

    # ------------------------------------------------------------------ streaming

    def begin_batch(self, labels: torch.Tensor, ids: torch.Tensor) -> None:
        """Start a batch: labels, ids [N] int64; each gate's hook then calls `update` once.

        Labels and ids are checked here, on the host, when they arrive on the CPU (as from a
        DataLoader); ids must lie in [0, 2**32 - 2] for top_k's keys.
        """
        if self._open is not None:
            raise StatsStateError("begin_batch was called again before end_batch ended the previous batch.")
        check_labels(labels, self.config.num_classes, self.config.classes)
        check_ids(ids)
        if self._held.shape[0] != labels.shape[0]:
            self._held = torch.empty(labels.shape[0], self.layout.total, device=self.device)
        self._open = (labels.to(self.device, torch.int64, non_blocking=True),
                      ids.to(self.device, torch.int64, non_blocking=True))
        self._fired = set()
        if self.inputs is not None:
            self.inputs.begin_batch(labels, ids)

    def update(self, name: str, s: torch.Tensor) -> None:
        """Copy one batch of gate values s [N, C] (any float dtype) of gate `name` into the batch's
        buffer, to be added with every other gate's (a copy: the model may change s in place).
        A second call for one gate in one batch would overwrite the first: it is refused."""
        if name in self._fired:
            raise GateValueError(f"gate {name} was given values twice in one batch; a module that runs several "
                                 "times per forward pass needs one gate per run (find_gates names them NAME.k).")
        self._held[:, self.columns[name]].copy_(s.detach())
        self._fired.add(name)

    def end_batch(self) -> None:
        """Add the batch begun (the gates that fired), or hold it until the calibration is set."""
        if self._open is None:
            raise StatsStateError("end_batch was called without a batch begun (begin_batch).")
        batch = _Batch(*self._open, self._held, frozenset(self._fired))
        self._open = None
        self.samples += batch.labels.shape[0]
        if self._calibrated:
            self._add(batch)
        else:
            for g in self.gates:  # a gate that did not fire gives no calibration value
                if g.name not in batch.fired:
                    batch.values[:, self.columns[g.name]] = torch.nan
            self._waiting.append(batch)
            self._held = torch.empty(0, self.layout.total, device=self.device)  # kept by the batch now
            if sum(b.labels.shape[0] for b in self._waiting) >= self.config.calibration:
                self._calibrate()
        if self.inputs is not None:
            self.inputs.end_batch()

    def finish(self) -> None:
        """After the last batch: calibrate on the samples seen if fewer than `config.calibration`
        arrived, and add them. Under torchrun every process calls it (it may gather)."""
        if self._open is not None:
            raise StatsStateError("finish was called with a batch still open (end_batch).")
        if not self._calibrated:
            self._calibrate()
        if self.inputs is not None:
            self.inputs.finish()

    def _calibrate(self) -> None:
        """Set every channel's shift and histogram edges from the calibration sample (the module
        docstring), then add the batches held for it."""
        ids = torch.cat([b.ids for b in self._waiting]) if self._waiting else torch.empty(0, dtype=torch.int64, device=self.device)
        values = torch.cat([b.values for b in self._waiting]) if self._waiting else self._held[:0]
        if self.gather is not None:
            ids, values = self.gather(ids, values)
        if ids.numel():
            chosen = torch.sort(ids, stable=True).indices[: self.config.calibration]
            shift, quantiles = shift_and_quantiles(values[chosen].double(), self.config.bins)
            self.fused["shift"].copy_(shift)
            if "edges" in self.fused:
                self.fused["edges"].copy_(histogram_edges(quantiles, self.config.bounded))
            self._calibrated = True
            for batch in self._waiting:
                self._add(batch)
        self._waiting = []

    def _add(self, batch: _Batch) -> None:
        """Add a batch: all gates in one pass when all of them fired, else each gate that fired alone."""
        cfg, y = self.config, batch.labels
        key, shard_hash = sample_hash(batch.ids, cfg.seed)
        rows = {"row": (shard_hash % cfg.shards) * cfg.num_classes + y}
        if cfg.permutations and "perm_sum" in self.fused:
            labels = permuted_labels(batch.ids, self._perms, self._classes, cfg.seed)
            rows["perm_row"] = self._perms[:, None] * cfg.num_classes + labels  # [P, N]
        if self.sampler is not None:  # class -> its slot row, the scratch slot where not kept
            rows["dest"] = self.sampler.add(torch.searchsorted(self._classes, y), key, batch.ids)
        if len(batch.fired) == len(self.gates):
            self._add_columns(batch, rows, slice(0, len(self.gates)), slice(0, self.layout.total))
            return
        for i, g in enumerate(self.gates):
            if g.name in batch.fired:
                self._add_columns(batch, rows, slice(i, i + 1), self.columns[g.name])

    def _add_columns(self, batch: _Batch, rows: dict[str, torch.Tensor], gates: slice, cols: slice) -> None:  # long: one kernel set per field
        """Add the values of the gates `gates` (channels `cols`) of a batch to every kept field."""
        cfg, y = self.config, batch.labels
        # The fields themselves where all channels are added: index_add_ into a strided view takes a slower path.
        f = self.fused if cols == slice(0, self.layout.total) else self.layout.columns_view(self.fused, cols)
        s32 = batch.values[:, cols]
        n, g = s32.shape[0], gates.stop - gates.start
        ones = torch.ones((), dtype=torch.int64, device=self.device)
        s64 = s32.double()
        x = s64 - f["shift"]
        f["count"][:, gates].index_add_(0, rows["row"], ones.expand(n, g))
        f["sum"].index_add_(0, rows["row"], x)
        f["sumsq"].index_add_(0, rows["row"], x * x)
        f["nonfinite"] += (~torch.isfinite(s32)).sum(0)
        torch.minimum(f["min"], s32.amin(0), out=f["min"])
        torch.maximum(f["max"], s32.amax(0), out=f["max"])
        if cfg.bounded:
            f["below"] += (s32 < 0).sum(0)
            f["above"] += (s32 > 1).sum(0)
        if "perm_row" in rows:
            perm_row, x32 = rows["perm_row"], x.float()
            f["perm_count"][:, gates].index_add_(0, perm_row.flatten(), ones.expand(perm_row.numel(), g))
            perm_sum = f["perm_sum"]
            for relabelled in perm_row:  # one pass per relabelling: no copy of the batch per relabelling
                perm_sum.index_add_(0, relabelled, x32)
        if "hist" in f:
            cells = cfg.bins + 2
            channel = torch.arange(cols.start, cols.stop, device=self.device)
            at = (y[:, None] * self.layout.total + channel) * cells + bin_cells(s64, f["edges"])
            self.fused["hist"].view(-1).index_add_(0, at.flatten(), ones.int().expand(at.numel()))
        if "sat_high" in f:
            f["sat_high"].index_add_(0, y, (s64 >= SAT_HIGH).int())
            f["sat_low"].index_add_(0, y, (s64 <= SAT_LOW).int())
        if "dest" in rows:
            f["reservoir"].index_copy_(0, rows["dest"], s32)
        if "top_values" in f:
            values = torch.cat([f["top_values"], s32.t()], dim=1)
            ids = torch.cat([f["top_ids"], batch.ids.expand(s32.shape[1], -1)], dim=1)
            for name, kept in zip(("top_values", "top_ids"), top_k(values, ids, cfg.topk)):
                f[name].copy_(kept)

    # ------------------------------------------------------------------ reading (CPU copies)

    def _require(self, *fields: str) -> None:
        """StatsStateError unless every batch is added and `fields` are kept."""
        if self._open is not None or self._waiting:
            raise StatsStateError("the statistics have a batch open or samples waiting for calibration: "
                                  "call end_batch() after each batch and finish() after the last one.")
        missing = [name for name in fields if name not in self.fused]
        if missing:
            raise StatsStateError(f"these statistics were collected without {', '.join(missing)} "
                                  f"(StatsConfig skip={list(self.config.skip)}, bounded={self.config.bounded}).")

    def gate_tensors(self, name: str) -> dict[str, torch.Tensor]:
        """One gate's statistics in the layout of `capture.fields` (views of the fields)."""
        self._require()
        return {field: self.layout.gate_view(self.fused, field, self._index[name]) for field in self.layout.fields}

    def _gate(self, name: str, *fields: str) -> list[torch.Tensor]:
        self._require(*fields)
        return [self.layout.gate_view(self.fused, field, self._index[name]).cpu() for field in fields]

    def moments(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(count [S, K] int64, sum [S, K, C], sumsq [S, K, C] float64) of s - shift(name), on the CPU."""
        count, total, total_sq = self._gate(name, "count", "sum", "sumsq")
        s, k = self.config.shards, self.config.num_classes
        return count.reshape(s, k), total.reshape(s, k, -1), total_sq.reshape(s, k, -1)

    def shift(self, name: str) -> torch.Tensor:
        """[C] float64: the per-channel shift of the moments (class means are shift + sum / count)."""
        return self._gate(name, "shift")[0]

    def perm_moments(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(count [P, K] int64, sum [P, K, C] float32) of s - shift under relabelling p =
        `keys.pseudo_labels(ids, p, config.present, config.seed)`, on the CPU. Sums of squares are not
        needed: the total sum of squares does not depend on the labels (`measures.permutation`)."""
        count, total = self._gate(name, "perm_count", "perm_sum")
        p, k = self.config.permutations, self.config.num_classes
        return count.reshape(p, k), total.reshape(p, k, -1)

    def histogram(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(counts [K, C, B + 2] int64, edges [C, B + 1] float64): cell 0 counts values below
        edges[:, 0], cell B + 1 those at or above edges[:, -1], cell b the bin [edges[b-1], edges[b])."""
        hist, edges = self._gate(name, "hist", "edges")
        return hist.long(), edges

    def saturation(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(high [K, C], low [K, C]) int64: exact counts of s >= 0.9 and s <= 0.1 (bounded gates)."""
        high, low = self._gate(name, "sat_high", "sat_low")
        return high.long(), low.long()

    def reservoir(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(values [n, C] float32, labels [n], ids [n]) of the kept samples, ordered by key."""
        values = self._gate(name, "reservoir")[0]
        slots, rows, ids = self.sampler.kept()
        return values[:-1][slots], self._classes.cpu()[rows], ids

    def top(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(values [C, k], ids [C, k]) of the samples that open each channel most; id -1 = empty."""
        values, ids = self._gate(name, "top_values", "top_ids")
        return values, ids

    def check(self) -> None:
        """Raise GateValueError for NaN/inf gates, gates outside [0, 1] or gates that never fired.

        The one place that reads device counters back to the host: call it after `finish`.
        """
        for g in self.gates:
            t = self.gate_tensors(g.name)
            seen = int(t["count"].sum())
            if seen != self.samples:
                raise GateValueError(f"gate {g.name} ({g.path}) saw {seen} of {self.samples} samples; "
                                     "its module did not run on every forward pass.")
            bad = int(t["nonfinite"].sum())
            if bad:
                raise GateValueError(f"gate {g.name} produced {bad} NaN or infinite values; "
                                     "the input data contains NaN or the model overflowed (try --amp bf16 or none).")
            out = int(t["below"].sum()) + int(t["above"].sum())
            if out:
                raise GateValueError(
                    f"gate {g.name} produced {out} values outside [0, 1] (min {float(t['min'].min()):.4g}, "
                    f"max {float(t['max'].max()):.4g}); {g.path} is not a sigmoid-type gate."
                )
        if self.inputs is not None:
            self.inputs.check()

    # ------------------------------------------------------------------ combining and storing

    def merge(self, other: GateStats, *, inputs: bool = True) -> GateStats:
        """Add `other` (statistics of disjoint samples) into self; the result equals the union's
        (the histogram's exactly when both were calibrated alike). With `inputs`, the squeeze-input
        statistics are merged too. Every field combines by its rule in `capture.fields`."""
        if self.config != other.config or self.gates != other.gates:
            raise StatsMismatchError(
                "cannot merge statistics of different gates or settings: "
                f"{self.config} with {[g.name for g in self.gates]} vs "
                f"{other.config} with {[g.name for g in other.gates]}."
            )
        if inputs and (self.inputs is None) != (other.inputs is None):
            raise StatsMismatchError("cannot merge statistics with squeeze inputs and statistics without them.")
        self._require()
        other._require()
        if inputs and self.inputs is not None:
            self.inputs.merge(other.inputs)
        theirs = {name: t.to(self.device) for name, t in other.fused.items()}
        if not self._calibrated and other._calibrated:
            for name in self.layout.by_merge(Merge.CALIBRATION):
                self.fused[name].copy_(theirs[name])
            self._calibrated = True
        theirs = moved_to(self.layout, theirs, self.fused)
        for name in self.layout.by_merge(*ELEMENTWISE):
            combine(self.fused[name], theirs[name], self.layout.fields[name].merge)
        self.samples += other.samples
        self.merge_sampled(other.sampled_state())
        return self

    def reduce(self, all_reduce: AllReduce) -> None:
        """Combine with the other processes' statistics, in place, every field that combines
        elementwise (summed, min, max) and the sample count: `all_reduce(t, rule)` is the collective
        (distributed.merge_ranks); the sampled fields follow by `merge_sampled`."""
        self._require()
        for name in self.layout.by_merge(*ELEMENTWISE):
            all_reduce(self.fused[name], self.layout.fields[name].merge)
        count = torch.tensor(self.samples, dtype=torch.int64, device=self.device)
        all_reduce(count, Merge.ADD)
        self.samples = int(count)

    def sampled_state(self) -> dict[str, torch.Tensor]:
        """The fields chosen by sample key or value (reservoir rows, top-k) and the reservoir's keys and
        ids: the live tensors, in the same order for statistics of one layout (not the inputs')."""
        sampler = {} if self.sampler is None else {RESERVOIR_KEYS: self.sampler.keys, RESERVOIR_IDS: self.sampler.ids}
        return sampler | {name: self.fused[name] for name in self.layout.by_merge(Merge.SAMPLED, Merge.TOP)}

    def merge_sampled(self, theirs: dict[str, torch.Tensor]) -> None:
        """Fold in another's `sampled_state()` (disjoint samples): per class the R samples of smallest
        key, per channel the k largest values."""
        theirs = {name: t.to(self.device) for name, t in theirs.items()}
        rows = None
        if self.sampler is not None:
            other = Reservoir(len(self._classes), self.config.reservoir, self.device,
                              keys=theirs[RESERVOIR_KEYS], ids=theirs[RESERVOIR_IDS])
            rows = self.sampler.merge(other)
        combine_sampled(self.fused, theirs, rows, self.config.topk)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Flat CPU tensors `{gate}/{field}` (and the reservoir's keys and ids), for safetensors
        (without `inputs`, stored beside)."""
        self._require()
        out = {} if self.sampler is None else {RESERVOIR_KEYS: self.sampler.keys.cpu(), RESERVOIR_IDS: self.sampler.ids.cpu()}
        for g in self.gates:
            for field, value in self.gate_tensors(g.name).items():
                out[f"{g.name}/{field}"] = value.cpu().contiguous()
        return out

    def describe(self) -> dict:
        """JSON-able description that, with state_dict, rebuilds these statistics."""
        return {"config": asdict(self.config), "gates": [asdict(g) for g in self.gates],
                "class_names": self.class_names, "samples": self.samples}

    @classmethod
    def from_state(cls, description: dict, tensors: dict[str, torch.Tensor], inputs: GateStats | None = None) -> GateStats:
        """Inverse of (describe, state_dict); raises KeyError/ValueError on a mismatched file."""
        config = description["config"]
        config = StatsConfig(**{**config, "classes": config["classes"] and tuple(config["classes"]),
                                "skip": tuple(config["skip"])})
        return cls([Gate(**g) for g in description["gates"]], config, description["class_names"],
                   inputs=inputs, state=tensors, samples=int(description["samples"]))

