"""Private training and encrypted scoring on UCI Adult, each next to its plain counterpart.

In one run, on the same data and the same 2-layer MLP (48 -> 64 -> 2, batch 256, one epoch
over the 32,561 rows, SGD, one torch thread so the figures do not depend on the machine's other
load), every loader fetching a batch at a time (:func:`batch_loader`; govplane indexes its
Poisson sample out of the tensors), so that the figures compare training and not row-by-row
data loading. Each figure is the training loop alone:

- plain SGD (shuffled) — the baseline;
- govplane's DP-SGD (``privacy.dp_sgd.train_dp_sgd``: Poisson sampling, book-keeping ghost
  clipping) with a given noise multiplier: its evidence's ``train_seconds``, the steps without
  the one-off setup and the final accounting;
- plain opacus (``PrivacyEngine.make_private`` with its default per-sample-gradient hooks), for
  reference.

And CKKS scoring (``privacy.he``) of 10,000 Adult rows with a logistic model fitted by
scikit-learn: encrypt (data owner), score (server), decrypt (data owner), next to scikit-learn's
plaintext ``predict_proba`` on the same rows. The run fails (exit 1) if any encrypted
probability differs from scikit-learn's by 1e-4 or more.

Run: ``.venv/bin/python bench/training.py [--rounds 2] [--json]``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _rows
import numpy as np
import torch
from opacus import PrivacyEngine
from sklearn.linear_model import LogisticRegression
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

# Run as a script, this file's folder comes first on sys.path; the packages live one above.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from control_plane.sample_data import adult_features, read_adult
from privacy.dp_sgd import DpSgdPlan, train_dp_sgd
from privacy.he import EncryptedLinearScorer, KeyHolder

BATCH = 256
HE_ROWS = 10_000


class TensorRows(TensorDataset):
    """A :class:`TensorDataset` that fetches a whole batch with one index per tensor."""

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, ...]]:
        return [tuple(tensor[indices] for tensor in self.tensors)]


def _fetched_batch(batch: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    return batch[0]


def batch_loader(data: TensorDataset, batch_size: int, shuffle: bool = False) -> DataLoader[Any]:
    """A loader of ``data`` that fetches a batch at a time instead of row by row."""
    rows: Dataset[Any] = TensorRows(*data.tensors)
    return DataLoader(rows, batch_size, shuffle=shuffle, collate_fn=_fetched_batch)


def _mlp(inputs: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(inputs, 64), nn.ReLU(), nn.Linear(64, 2))


def _best(rounds: int, measure: Callable[[], float]) -> float:
    return min(measure() for _ in range(rounds))


def plain_epoch(data: TensorDataset) -> float:
    """Seconds for one epoch of plain minibatch SGD."""
    model = _mlp(data.tensors[0].shape[1])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    criterion = nn.CrossEntropyLoss()
    started = time.perf_counter()
    for features, labels in batch_loader(data, BATCH, shuffle=True):
        optimizer.zero_grad()
        criterion(model(features), labels).backward()
        optimizer.step()
    return time.perf_counter() - started


def govplane_epoch(data: TensorDataset) -> float:
    """Seconds for the steps of one epoch of govplane's DP-SGD (``train_seconds``)."""
    model = _mlp(data.tensors[0].shape[1])
    plan = DpSgdPlan(
        max_grad_norm=1.0, delta=1e-5, epochs=1, batch_size=BATCH, noise_multiplier=1.0
    )
    evidence = train_dp_sgd(
        model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), data, plan
    )
    assert evidence.grad_sample_mode == "ghost-bookkeeping", evidence
    return evidence.train_seconds


def opacus_epoch(data: TensorDataset) -> float:
    """Seconds for one epoch of plain opacus (per-sample-gradient hooks)."""
    model = _mlp(data.tensors[0].shape[1])
    warnings.simplefilter("ignore")  # opacus warns that secure RNG is off, and on every hook
    with warnings.catch_warnings():
        model, optimizer, loader = PrivacyEngine(accountant="rdp").make_private(
            module=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            data_loader=batch_loader(data, BATCH),
            noise_multiplier=1.0,
            max_grad_norm=1.0,
        )
    criterion = nn.CrossEntropyLoss()
    started = time.perf_counter()
    for features, labels in loader:
        optimizer.zero_grad()
        criterion(model(features), labels).backward()
        optimizer.step()
    return time.perf_counter() - started


def he_scoring(model: LogisticRegression, rows: np.ndarray) -> float:
    """Seconds to encrypt, score and decrypt ``rows``; fails if any probability is off."""
    started = time.perf_counter()
    owner = KeyHolder()
    server = EncryptedLinearScorer(owner.public_context(), model.coef_, model.intercept_[0])
    logits = owner.decrypt_scores(server.score(owner.encrypt_columns(rows)), len(rows))
    elapsed = time.perf_counter() - started
    error = np.abs(1 / (1 + np.exp(-logits)) - model.predict_proba(rows)[:, 1]).max()
    if error >= 1e-4:
        raise SystemExit(f"encrypted scores differ from plaintext by {error}")
    return elapsed


def plain_scoring(model: LogisticRegression, rows: np.ndarray) -> float:
    """Seconds for scikit-learn's plaintext probabilities of ``rows``."""
    started = time.perf_counter()
    model.predict_proba(rows)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="end with the rows as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    features, labels = adult_features(read_adult())
    data = TensorDataset(torch.from_numpy(features), torch.from_numpy(labels))
    plain = _best(args.rounds, lambda: plain_epoch(data))
    ours = _best(args.rounds, lambda: govplane_epoch(data))
    opacus = _best(args.rounds, lambda: opacus_epoch(data))
    model = LogisticRegression(max_iter=1000).fit(features, labels)
    rows = features[:HE_ROWS].astype(np.float64)
    encrypted = _best(args.rounds, lambda: he_scoring(model, rows))
    clear = _best(args.rounds, lambda: plain_scoring(model, rows))
    print(f"one epoch, 2-layer MLP, batch {BATCH}, {len(data):,} rows, 1 torch thread")
    print(f"  plain SGD:                     {plain:7.3f} s")
    print(f"  govplane DP-SGD (bookkeeping): {ours:7.3f} s  ({ours / plain:.2f}x; goal <= 2.5x)")
    print(f"  plain opacus (hooks):          {opacus:7.3f} s  ({opacus / plain:.2f}x)")
    print(f"CKKS scoring of {HE_ROWS:,} rows, logistic model, {features.shape[1]} features")
    print(
        f"  encrypt + score + decrypt:     {encrypted:7.2f} s  ({HE_ROWS / encrypted:,.0f} rows/s)"
    )
    print(f"  plaintext predict_proba:       {clear:7.4f} s  ({HE_ROWS / clear:,.0f} rows/s)")
    if args.json:
        _rows.emit(
            [
                _rows.row(
                    "DP-SGD epoch, 2-layer MLP on Adult",
                    ours,
                    "s",
                    plain,
                    "plain SGD",
                    "<= 2.5x plain SGD",
                    ours <= 2.5 * plain,
                ),
                _rows.row("plain opacus epoch (reference)", opacus, "s", plain, "plain SGD"),
                _rows.row(
                    f"CKKS scoring, {HE_ROWS:,} Adult rows",
                    HE_ROWS / encrypted,
                    "rows/s",
                    HE_ROWS / clear,
                    "plaintext scikit-learn",
                    f"{HE_ROWS:,} rows < 10 s",
                    encrypted < 10,
                ),
            ]
        )


if __name__ == "__main__":
    main()
