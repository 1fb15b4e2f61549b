"""Homomorphic encryption with TenSEAL CKKS: scoring and aggregation on data never decrypted.

Roles: the data owner is the :class:`KeyHolder`; it alone has the secret key, and it hands the
server a serialized public context (no secret key) and serialized ciphertexts. The server side
(:class:`EncryptedLinearScorer`, :class:`EncryptedAggregator`) accepts only a context without a
secret key, computes on ciphertexts, and returns ciphertexts: it has no way to decrypt, and only
the key holder turns results into numbers.

Rows are packed by column: each ciphertext holds one feature of up to ``slots`` rows, so a linear
score of a whole chunk is one plaintext-scalar multiplication and one addition per feature.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import tenseal as ts

# The largest total coefficient modulus (bits) per polynomial degree that keeps 128-bit
# classical security (HomomorphicEncryption.org standard, Table 1; the bound SEAL enforces).
MAX_COEFF_BITS_128: Final = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}

Matrix = npt.NDArray[np.float64]


class InsecureParametersError(ValueError):
    """CKKS parameters below 128-bit security."""


class SecretKeyExposureError(ValueError):
    """A secret key was about to reach a party that must never hold one."""


@dataclass(frozen=True)
class CkksParameters:
    """CKKS parameters, refused below 128-bit security.

    The default (N = 8192, moduli 60/40/60 bits, scale 2^40) allows one multiplication by a
    plaintext, which a linear score needs, with about 1e-7 absolute error on unit-size values.
    """

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 40, 60)
    global_scale_bits: int = 40

    def __post_init__(self) -> None:
        limit = MAX_COEFF_BITS_128.get(self.poly_modulus_degree)
        if limit is None:
            raise InsecureParametersError(
                f"poly_modulus_degree {self.poly_modulus_degree} is not one of "
                f"{', '.join(map(str, MAX_COEFF_BITS_128))}"
            )
        total = sum(self.coeff_mod_bit_sizes)
        if total > limit:
            raise InsecureParametersError(
                f"a {total}-bit coefficient modulus at degree {self.poly_modulus_degree} is below "
                f"128-bit security (at most {limit} bits)"
            )
        if len(self.coeff_mod_bit_sizes) < 3:
            raise ValueError("CKKS scoring needs at least three coefficient moduli")

    @property
    def slots(self) -> int:
        """Values one ciphertext packs."""
        return self.poly_modulus_degree // 2


@dataclass(frozen=True)
class EncryptedColumns:
    """Rows encrypted column by column: ``chunks[i][j]`` is feature ``j`` of chunk ``i``."""

    rows: int
    features: int
    chunks: tuple[tuple[bytes, ...], ...]


def _public(context_bytes: bytes) -> ts.Context:
    context = ts.context_from(context_bytes)
    if context.has_secret_key():
        raise SecretKeyExposureError(
            "the context carries the secret key; the server takes only a public context"
        )
    return context


class KeyHolder:
    """The data owner: holds the secret key, encrypts its data and decrypts results."""

    def __init__(self, parameters: CkksParameters | None = None) -> None:
        self.parameters = parameters or CkksParameters()
        self._context = ts.context(
            ts.SCHEME_TYPE.CKKS,
            poly_modulus_degree=self.parameters.poly_modulus_degree,
            coeff_mod_bit_sizes=list(self.parameters.coeff_mod_bit_sizes),
        )
        self._context.global_scale = 2.0**self.parameters.global_scale_bits

    @classmethod
    def load(cls, secret_context: bytes, parameters: CkksParameters | None = None) -> KeyHolder:
        """A key holder of a context :meth:`secret_context` serialized with ``parameters``.

        Raises:
            ValueError: the context carries no secret key.
        """
        context = ts.context_from(secret_context)
        if not context.has_secret_key():
            raise ValueError("the context carries no secret key")
        holder = cls.__new__(cls)
        holder.parameters = parameters or CkksParameters()
        holder._context = context
        return holder

    def public_context(self) -> bytes:
        """The serialized context without the secret key, for the server."""
        return bytes(self._context.serialize(save_secret_key=False))

    def secret_context(self) -> bytes:
        """The serialized context with the secret key, for the key holders' own storage."""
        return bytes(self._context.serialize(save_secret_key=True))

    def encrypt_vector(self, values: npt.ArrayLike) -> bytes:
        """One packed vector (a statistic or a model update), encrypted and serialized."""
        flat = np.asarray(values, dtype=np.float64).ravel()
        if flat.size > self.parameters.slots:
            raise ValueError(f"{flat.size} values exceed the {self.parameters.slots} slots")
        return bytes(ts.ckks_vector(self._context, flat.tolist()).serialize())

    def encrypt_columns(self, features: npt.ArrayLike) -> EncryptedColumns:
        """Encrypt a (rows x features) matrix column by column, ``slots`` rows per chunk."""
        matrix = np.asarray(features, dtype=np.float64)
        if matrix.ndim != 2 or not np.isfinite(matrix).all():
            raise ValueError("features must be a finite 2-D matrix")
        slots = self.parameters.slots
        chunks = tuple(
            tuple(self.encrypt_vector(column) for column in matrix[start : start + slots].T)
            for start in range(0, matrix.shape[0], slots)
        )
        return EncryptedColumns(rows=matrix.shape[0], features=matrix.shape[1], chunks=chunks)

    def decrypt_vector(self, ciphertext: bytes, size: int | None = None) -> Matrix:
        """Decrypt one serialized vector (the first ``size`` values)."""
        values = np.asarray(ts.ckks_vector_from(self._context, ciphertext).decrypt())
        return values if size is None else values[:size]

    def decrypt_scores(self, scores: Sequence[bytes], rows: int) -> Matrix:
        """Decrypt the chunked scores of ``rows`` rows into one vector."""
        slots = self.parameters.slots
        parts = [
            self.decrypt_vector(chunk, min(slots, rows - index * slots))
            for index, chunk in enumerate(scores)
        ]
        return np.concatenate(parts) if parts else np.empty(0)


class EncryptedLinearScorer:
    """Server side: the linear score ``X @ coef + intercept`` of encrypted rows.

    For a logistic model the result is the encrypted logit; the key holder applies the sigmoid
    after decrypting (it is monotone and exact in the clear, and costs no encrypted depth).
    """

    def __init__(self, public_context: bytes, coef: npt.ArrayLike, intercept: float) -> None:
        self._context = _public(public_context)
        self._coef = [float(w) for w in np.asarray(coef, dtype=np.float64).ravel()]
        self._intercept = float(intercept)

    def score(self, batch: EncryptedColumns) -> tuple[bytes, ...]:
        """The encrypted scores, one serialized vector per chunk of rows."""
        if batch.features != len(self._coef):
            raise ValueError(f"{batch.features} features given, the model has {len(self._coef)}")
        return tuple(self._score_chunk(chunk) for chunk in batch.chunks)

    def _score_chunk(self, columns: Sequence[bytes]) -> bytes:
        total: ts.CKKSVector | None = None
        for weight, column in zip(self._coef, columns, strict=True):
            term = ts.ckks_vector_from(self._context, column) * weight
            total = term if total is None else total + term
        assert total is not None
        return bytes((total + self._intercept).serialize())


class EncryptedAggregator:
    """Server side: sums (or averages) encrypted vectors from several contributors."""

    def __init__(self, public_context: bytes) -> None:
        self._context = _public(public_context)

    @property
    def is_public(self) -> bool:
        """Whether its context is without a secret key: always, as it refuses any other."""
        return bool(self._context.is_public())

    def total(self, contributions: Sequence[bytes]) -> bytes:
        """The encrypted element-wise sum of the contributions."""
        if not contributions:
            raise ValueError("nothing to aggregate")
        vectors = [ts.ckks_vector_from(self._context, c) for c in contributions]
        total = vectors[0]
        for vector in vectors[1:]:
            total = total + vector
        return bytes(total.serialize())

    def mean(self, contributions: Sequence[bytes]) -> bytes:
        """The encrypted element-wise mean (for averaging model updates)."""
        return self.weighted_mean(contributions, len(contributions))

    def weighted_mean(
        self,
        contributions: Sequence[bytes],
        total_weight: float,
        offset: npt.ArrayLike | None = None,
    ) -> bytes:
        """The encrypted sum of the contributions (each already multiplied by its weight)
        divided by ``total_weight``, plus a plaintext ``offset`` (such as DP noise) if given."""
        if total_weight <= 0:
            raise ValueError("the total weight must be positive")
        total = ts.ckks_vector_from(self._context, self.total(contributions))
        mean = total * (1.0 / total_weight)
        if offset is not None:
            mean = mean + np.asarray(offset, dtype=np.float64).ravel().tolist()
        return bytes(mean.serialize())
