"""Search over a project's passages, ranked by document.

Hybrid (vector + full-text) search answers queries (``search_queries``); similar
documents answers "more like this" for a stored document (``similar_documents``).
One module per concern:

- ``filters``: which documents a search may return, as SQL conditions LanceDB
  applies before ranking;
- ``retrieval``: LanceDB's candidate rows and their scores (nearest passages, BM25),
  with the vector index's recall settings;
- ``scoring``: the fusion of vector and BM25 scores, and a document's hybrid score;
- ``grouping``: rounds of candidates grouped into documents, each with its best
  passage as a snippet;
- ``similar``: the documents nearest to a stored one, from its passage vectors.

This package's names are what the task layer, the benches and the tests use. The
measured settings live in their own modules (``scoring.VECTOR_WEIGHT``...): a
bench that tries other values sets them there.
"""

from ml_worker.constants import Scoring, SearchMode
from ml_worker.search.filters import Filters
from ml_worker.search.grouping import group_by_document, search_queries
from ml_worker.search.retrieval import (
    first_passage_similarities,
    nearest_passages,
    passages_limit,
    text_scores,
)
from ml_worker.search.scoring import (
    HybridEvidence,
    agreement,
    fused_scores,
    hybrid_document_scores,
    passage_scores,
)
from ml_worker.search.similar import Relation, similar_documents

__all__ = [
    "Filters",
    "HybridEvidence",
    "Relation",
    "Scoring",
    "SearchMode",
    "agreement",
    "first_passage_similarities",
    "fused_scores",
    "group_by_document",
    "hybrid_document_scores",
    "nearest_passages",
    "passage_scores",
    "passages_limit",
    "search_queries",
    "similar_documents",
    "text_scores",
]
