"""Similar incidents: TF-IDF over an incident's text, cosine nearest neighbours.

Pure (numpy, scipy, scikit-learn). The text of an incident is its title, description,
labels (``key=value`` tokens and values), service, category and resolution notes.
Terms are hashed (``HashingVectorizer``, unigrams and bigrams, 2**20 features), so a
word first seen after the index was built still gets a column. Weights are those of
scikit-learn's ``TfidfTransformer(sublinear_tf=True)``: ``(1 + ln tf) * idf`` with the
smoothed ``idf = ln((1 + n) / (1 + df)) + 1``, rows L2-normalised, so a dot product
is the cosine similarity. IDF is fitted at build time.

Keeping current: :meth:`SimilarIndex.upsert` vectorises changed incidents (one
``transform`` per batch) with the current IDF into a *side* matrix and masks their
stale main rows; queries read both. :meth:`needs_rebuild` says when the side matrix
has grown past a fraction of the main one; :meth:`compact` then folds it into the
main matrix and refits IDF from the stored rows (document frequencies are the
column counts, and reweighting a normalised row by ``new_idf / old_idf`` and
normalising again gives exactly the row a fresh fit would), without re-reading or
re-tokenising any text.

Both matrices are kept transposed (terms x incidents, CSR): a query takes the rows of
its own terms and multiplies them by its weights, one sparse x dense product per
chunk of queries, giving dense scores over every indexed incident.

Threads: the arrays a query reads form one immutable snapshot; :meth:`upsert` and
:meth:`compact` build a new snapshot (under a ``threading.Lock`` that only writers
take, inside this synchronous code) and publish it with one assignment. Queries never
wait for a writer, so the owner may run writers and queries in worker threads
(``asyncio.to_thread``) while other queries are answered.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

N_FEATURES = 2**20
_WORDS = r"(?u)\b[\w.\-/=]{2,}\b"
#: Queries scored per sparse x dense product in :meth:`SimilarIndex.query_many`
#: (bounds its memory: indexed incidents x chunk float64).
QUERY_CHUNK = 16


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


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What queries read; never mutated once published (writers make a new one)."""

    idf: Any  # float64[N_FEATURES]
    ids: Any  # int64[n]: incident id of each main column
    main_t: Any  # terms x n (CSR) or None
    stale: Any  # bool[n]: main column superseded by a side column
    row_of: dict[int, int]  # incident id -> main column
    side_ids: Any  # int64[m]
    side: Any  # m x terms (CSR) or None: rows, for cheap re-stacking
    side_t: Any  # terms x m (CSR) or None: for queries


_NO_IDS = np.zeros(0, dtype=np.int64)


def _idf(rows: Any) -> Any:
    """Smoothed IDF of a document x term matrix (as TfidfTransformer.fit)."""
    df = np.bincount(rows.indices, minlength=N_FEATURES).astype(np.float64)
    return np.log((1.0 + rows.shape[0]) / (1.0 + df)) + 1.0


class SimilarIndex:
    def __init__(self) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        self._hasher = HashingVectorizer(
            n_features=N_FEATURES,
            alternate_sign=False,
            norm=None,
            ngram_range=(1, 2),
            token_pattern=_WORDS,
            lowercase=True,
        )
        self._snap = _Snapshot(
            np.ones(N_FEATURES), _NO_IDS, None, np.zeros(0, dtype=bool), {}, _NO_IDS, None, None
        )
        self._write = threading.Lock()

    def __len__(self) -> int:
        snap = self._snap
        extra = np.count_nonzero(~np.isin(snap.side_ids, snap.ids)) if len(snap.side_ids) else 0
        return len(snap.ids) + int(extra)

    def _counts(self, texts: Sequence[str]) -> Any:
        counts = self._hasher.transform(texts).tocsr()
        np.log(counts.data, out=counts.data)
        counts.data += 1.0  # sublinear tf: 1 + ln(tf)
        return counts

    @staticmethod
    def _weigh(tf: Any, idf: Any) -> Any:
        from sklearn.preprocessing import normalize

        tf.data *= idf[tf.indices]
        return normalize(tf, copy=False).tocsr()

    def build(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        """(Re)build from scratch, fitting IDF on ``texts``."""
        tf = self._counts(texts)
        idf = _idf(tf) if len(texts) else np.ones(N_FEATURES)
        self._publish(np.asarray(ids, dtype=np.int64), self._weigh(tf, idf), idf)

    def _publish(self, ids: Any, rows: Any, idf: Any) -> None:
        row_of = {int(i): n for n, i in enumerate(ids.tolist())}
        with self._write:
            self._snap = _Snapshot(
                idf,
                ids,
                rows.T.tocsr(),
                np.zeros(len(ids), dtype=bool),
                row_of,
                _NO_IDS,
                None,
                None,
            )

    def vectors(self, texts: Sequence[str]) -> Any:
        """L2-normalised TF-IDF rows under the current IDF (one transform per batch)."""
        return self._weigh(self._counts(texts), self._snap.idf)

    def upsert(self, items: Iterable[tuple[int, str]]) -> None:
        """Index new or changed incidents (the last text of an id wins)."""
        from scipy.sparse import vstack

        latest = dict(items)
        if not latest:
            return
        new_ids = np.fromiter(latest.keys(), dtype=np.int64, count=len(latest))
        tf = self._counts(list(latest.values()))
        with self._write:
            snap = self._snap
            rows = self._weigh(tf, snap.idf)
            stale = snap.stale
            main_rows = [snap.row_of[i] for i in latest if i in snap.row_of]
            if main_rows:
                stale = stale.copy()
                stale[main_rows] = True
            if snap.side is not None:
                keep = np.flatnonzero(~np.isin(snap.side_ids, new_ids))
                side = vstack([snap.side[keep], rows], format="csr")
                side_ids = np.concatenate([snap.side_ids[keep], new_ids])
            else:
                side, side_ids = rows, new_ids
            self._snap = _Snapshot(
                snap.idf,
                snap.ids,
                snap.main_t,
                stale,
                snap.row_of,
                side_ids,
                side,
                side.T.tocsr(),
            )

    def compact(self) -> None:
        """Fold the side matrix into the main one and refit IDF on every indexed row."""
        from scipy.sparse import vstack

        with self._write:
            snap = self._snap
        if snap.side is None:
            return
        parts, ids = [], []
        if snap.main_t is not None and len(snap.ids):
            fresh = np.flatnonzero(~snap.stale)
            parts.append(snap.main_t.T.tocsr()[fresh])
            ids.append(snap.ids[fresh])
        parts.append(snap.side)
        ids.append(snap.side_ids)
        rows = vstack(parts, format="csr")
        idf = _idf(rows)
        rows.data *= (idf / snap.idf)[rows.indices]
        from sklearn.preprocessing import normalize

        rows = normalize(rows, copy=False).tocsr()
        all_ids = np.concatenate(ids)
        with self._write:
            if self._snap is not snap:  # an upsert came in meanwhile: keep its rows
                return
        self._publish(all_ids, rows, idf)

    @property
    def side_size(self) -> int:
        return len(self._snap.side_ids)

    def needs_rebuild(self, fraction: float = 0.1, minimum: int = 1000) -> bool:
        return self.side_size > max(minimum, fraction * len(self._snap.ids))

    def query(self, text: str, k: int, exclude: int | None = None) -> list[Match]:
        return self.query_many([text], k, exclude=[exclude])[0]

    def query_many(
        self,
        texts: Sequence[str],
        k: int,
        *,
        exclude: Sequence[int | None] | None = None,
        before: Sequence[int | None] | None = None,
    ) -> list[list[Match]]:
        """Top ``k`` (score > 0, best first, ties by id) for each text. ``exclude[i]``
        leaves that id out of answer ``i``; ``before[i]`` keeps only ids below it
        (incidents opened earlier). The texts are vectorised in one transform; each is
        then scored by one sparse x dense product over the postings of its own terms
        (measured faster than one product for a whole batch, whose cost grows with
        the batch's union of terms times its size)."""
        if not texts:
            return []
        snap = self._snap
        queries = self._weigh(self._counts(texts), snap.idf)
        ids = np.concatenate([snap.ids, snap.side_ids])
        n = len(snap.ids)
        raw = np.zeros(len(ids))  # the last text's scores, before the per-query masks
        ranked: Any = None  # positions of raw's positive scores, best first (in a run)
        scores = np.zeros(len(ids))
        out: list[list[Match]] = []
        for i in range(len(texts)):
            # A text equal to the one before it has the same scores: an alert storm opens
            # runs of incidents with one title, and each was scored against the whole
            # index again (the suggester's CPU per incident of a create storm: ~400 us
            # before, ~100 us after, with the ranking below; ADR-008).
            if i == 0 or texts[i] != texts[i - 1]:
                ranked = None
                lo, hi = queries.indptr[i], queries.indptr[i + 1]
                terms, weights = queries.indices[lo:hi], queries.data[lo:hi]
                raw[:] = 0.0
                if snap.main_t is not None and n:
                    raw[:n] = _scores(snap.main_t, terms, weights)
                    raw[:n][snap.stale] = 0.0
                if snap.side_t is not None:
                    raw[n:] = _scores(snap.side_t, terms, weights)
            else:
                if ranked is None:  # the second of a run: rank its candidates once
                    positive = np.flatnonzero(raw > 0)
                    ranked = positive[np.lexsort((ids[positive], -raw[positive]))]
                out.append(
                    _pick(
                        ids,
                        raw,
                        ranked,
                        k,
                        exclude=None if exclude is None else exclude[i],
                        before=None if before is None else before[i],
                    )
                )
                continue
            scores[:] = raw
            if exclude is not None and exclude[i] is not None:
                scores[ids == exclude[i]] = 0.0
            if before is not None and before[i] is not None:
                scores[ids >= before[i]] = 0.0
            out.append(_top(ids, scores, k))
        return out


def _pick(
    ids: Any, raw: Any, ranked: Any, k: int, *, exclude: int | None, before: int | None
) -> list[Match]:
    """The first ``k`` of ``ranked`` (positions with a positive score, best first, ties
    by id) that a query may return: what :func:`_top` gives after the query's own
    masks, without another pass over every indexed incident."""
    out: list[Match] = []
    step = max(4 * k, 64)
    for start in range(0, len(ranked), step):
        chunk = ranked[start : start + step]
        found = ids[chunk]
        keep = np.ones(len(chunk), dtype=bool)
        if exclude is not None:
            keep &= found != exclude
        if before is not None:
            keep &= found < before
        for j in chunk[keep][: k - len(out)].tolist():
            out.append(Match(int(ids[j]), round(float(raw[j]), 4)))
        if len(out) == k:
            break
    return out


def _scores(matrix_t: Any, terms: Any, weights: Any) -> Any:
    """Dense scores of every column of ``matrix_t`` (terms x incidents) against one
    query: only the rows (postings) of the query's own terms are read."""
    if not len(terms):
        return 0.0
    return matrix_t[terms].T @ weights


def _top(ids: Any, scores: Any, k: int) -> list[Match]:
    positive = np.flatnonzero(scores > 0)
    if len(positive) > k:
        # every candidate scoring at least the k-th best (ties at the cut, then by id)
        cut = np.partition(scores[positive], len(positive) - k)[len(positive) - k]
        positive = positive[scores[positive] >= cut]
    cand_ids, cand_scores = ids[positive], scores[positive]
    order = np.lexsort((cand_ids, -cand_scores))[:k]
    return [Match(int(cand_ids[j]), round(float(cand_scores[j]), 4)) for j in order]
