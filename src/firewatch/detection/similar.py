"""Similar incidents: TF-IDF over an incident's text, cosine nearest neighbours.

Pure (numpy, scipy, scikit-learn). The text of an incident is its title, description,
labels (``key=value`` tokens and values), service, category and resolution notes.
Terms are hashed (``HashingVectorizer``, unigrams and bigrams, 2**20 features), so a
word first seen after the index was built still gets a column; IDF weights are fitted
at build time. Rows are L2-normalised, so a dot product is the cosine similarity.

Keeping current: :meth:`SimilarIndex.upsert` re-vectorises a changed incident with the
current IDF into a small side matrix and masks its stale main row; queries read both.
:meth:`needs_rebuild` says when the side matrix has grown past a fraction of the main
one, and the owner rebuilds (refitting IDF). The main matrix is kept transposed
(terms x incidents, CSR), so a query touches only the rows of its own terms.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

N_FEATURES = 2**20
_WORDS = r"(?u)\b[\w.\-/=]{2,}\b"


def incident_text(
    *,
    title: str,
    description: str = "",
    labels: Mapping[str, str] | None = None,
    service: str | None = None,
    category: str | None = None,
    resolution: str | None = None,
) -> str:
    """The document an incident is indexed as. The title counts twice: it is the
    most specific text responders write."""
    parts = [title, title, description]
    for key, value in sorted((labels or {}).items()):
        parts.append(f"{key}={value} {value}")
    if service:
        parts.append(f"service={service} {service}")
    if category:
        parts.append(f"category={category}")
    if resolution:
        parts.append(resolution)
    return re.sub(r"\s+", " ", " ".join(p for p in parts if p)).strip()


@dataclass(frozen=True, slots=True)
class Match:
    incident_id: int
    score: float


class SimilarIndex:
    def __init__(self) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

        self._hasher = HashingVectorizer(
            n_features=N_FEATURES,
            alternate_sign=False,
            norm=None,
            ngram_range=(1, 2),
            token_pattern=_WORDS,
            lowercase=True,
        )
        self._tfidf = TfidfTransformer(sublinear_tf=True)
        self._ids = np.zeros(0, dtype=np.int64)
        self._main_t: Any = None  # terms x incidents (CSR)
        self._stale = np.zeros(0, dtype=bool)
        self._row_of: dict[int, int] = {}
        self._side: dict[int, Any] = {}  # id -> 1 x terms row (CSR)
        self._fitted = False

    def __len__(self) -> int:
        return len(self._row_of) + sum(1 for i in self._side if i not in self._row_of)

    def build(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        from sklearn.preprocessing import normalize

        counts = self._hasher.transform(texts)
        if len(texts):
            self._tfidf.fit(counts)
            self._fitted = True
            matrix = normalize(self._tfidf.transform(counts))
        else:
            matrix = counts
        self._ids = np.asarray(ids, dtype=np.int64)
        self._main_t = matrix.T.tocsr()
        self._stale = np.zeros(len(ids), dtype=bool)
        self._row_of = {int(i): n for n, i in enumerate(self._ids)}
        self._side = {}

    def _vector(self, text: str) -> csr_matrix:
        from sklearn.preprocessing import normalize

        counts = self._hasher.transform([text])
        if not self._fitted:
            return normalize(counts)
        return normalize(self._tfidf.transform(counts))

    def upsert(self, items: Iterable[tuple[int, str]]) -> None:
        for incident_id, text in items:
            row = self._row_of.get(incident_id)
            if row is not None:
                self._stale[row] = True
            self._side[incident_id] = self._vector(text)

    @property
    def side_size(self) -> int:
        return len(self._side)

    def needs_rebuild(self, fraction: float = 0.1, minimum: int = 1000) -> bool:
        return self.side_size > max(minimum, fraction * len(self._ids))

    def query(self, text: str, k: int, exclude: int | None = None) -> list[Match]:
        q = self._vector(text)
        candidates: list[tuple[float, int]] = []
        if self._main_t is not None and len(self._ids):
            scores = np.asarray((q @ self._main_t).todense()).ravel()
            scores[self._stale] = -1.0
            if exclude is not None and exclude in self._row_of:
                scores[self._row_of[exclude]] = -1.0
            take = min(k, len(scores))
            top = np.argpartition(-scores, take - 1)[:take]
            candidates += [(float(scores[i]), int(self._ids[i])) for i in top if scores[i] > 0]
        for incident_id, vec in self._side.items():
            if incident_id == exclude:
                continue
            score = float(vec.multiply(q).sum())
            if score > 0:
                candidates.append((score, incident_id))
        candidates.sort(key=lambda c: (-c[0], c[1]))
        return [Match(i, round(s, 4)) for s, i in candidates[:k]]
