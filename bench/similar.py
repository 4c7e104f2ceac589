"""Similar documents: recall of translations and copies, relation marks, latency.

Two sets, each indexed in Elasticsearch with Datashare's layout and vectorized by the
``vectorize_docs`` task (bench.quality's path), then every document asks
``similar_documents`` for its 5 most similar:

- ``translations``: Debian's package descriptions (bench.datasets.debian_descriptions'
  files), one document per package and language, for packages translated into all
  six of its languages: each document's 5 translations are the ones to find.
  Multilingual model. Packages whose English description repeats another's
  (``foo``, ``foo-doc``) are left out, so translations are the only right answers.
- ``copies``: Python's documentation sections (bench.datasets.python_sections), and
  a copy of some of them: exact, a few words changed, a paragraph dropped, a
  paragraph of another section added, whitespace and case changed. Each original
  and its copy are to find each other, marked ``near_duplicate``. Measured with the
  model ``auto`` picks (English) and with the multilingual one: the relation
  thresholds must hold for both.

Figures: recall@5 (the share of a document's translations or copy among its 5
results), how many of those found are marked as they should be (``translation``,
``near_duplicate``), and marks given to documents that are neither; the scores of
right and wrong results, which the thresholds in ``ml_worker.search.similar`` were
chosen on; in-process latency of ``similar_documents`` (p50/p99) on each set and on
a synthetic table of 100,000 passages (bench.search_latency's, built once into its
cache).

    uv run python -m bench.similar [--packages N] [--copies N] [--rows N]
        [--es-url URL] [--cache DIR] [--smoke]

``--smoke``: a few built-in documents, no download, no 100,000-passage table: it
checks the bench runs (seconds), its figures mean little. The last line is
``similar translations_recall5=… translation_marked=… false_translation=…
copies_recall5=… near_duplicate_marked=… false_near_duplicate=… p50_ms=… p99_ms=…
synthetic_rows=… synthetic_p50_ms=…``: the copies figures are the worst over the
models, false near-duplicates summed over every set, p50/p99 over every set's
documents.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import os
import random
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench import quality
from bench.datasets import debian, debian_descriptions, python_sections
from bench.search_latency import PROJECT as SYNTHETIC_PROJECT
from bench.search_latency import Setup, build_table
from ml_worker import store
from ml_worker.config import MLWorkerConfig
from ml_worker.constants import AUTO_MODEL
from ml_worker.es_client import es_client
from ml_worker.search import Filters, Relation, similar_documents
from ml_worker_dev.local_stack import es_emulator

K = 5
SEED = 29
PACKAGES = 60  # 360 documents of 6 languages
COPIES = 60  # of the sections, 12 of each kind of copy
SYNTHETIC_ROWS = 100_000
SYNTHETIC_QUERIES = 200
MULTILINGUAL = "multilingual"  # the model's alias


@dataclass(frozen=True)
class Doc:
    """A document of a set: those of one group are the ones each is to find."""

    id: str
    content: str
    language: str
    group: str
    kind: str = ""  # how a copy was made; "" for originals and translations


# -- the translations set -------------------------------------------------------


def translations(n_packages: int, cache: Path) -> list[Doc]:
    """Each of ``n_packages`` packages' long description in its six languages,
    built once into ``cache``."""
    path = cache / f"similar-translations-{n_packages}.jsonl"
    if not path.exists():
        with tempfile.TemporaryDirectory() as lists:
            files = debian_descriptions.fetch_translations(Path(lists))
            docs = _translated(files, n_packages)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for doc in docs:
                f.write(json.dumps(doc.__dict__, ensure_ascii=False) + "\n")
    with path.open(encoding="utf-8") as f:
        return [Doc(**json.loads(line)) for line in f]


def _translated(files: dict[str, Path], n_packages: int) -> list[Doc]:
    english = debian_descriptions.read_descriptions(files["en"])
    languages = debian_descriptions.LANGUAGES
    translated = {
        code: debian_descriptions.read_descriptions(files[code]) for code in languages
    }
    docs: list[Doc] = []
    seen: set[str] = set()  # English short and long descriptions already used
    packages = 0
    for package in sorted(
        english, key=lambda p: hashlib.sha256(p.encode()).hexdigest()
    ):
        md5, short, long = english[package]
        keys = {short.lower(), long[:120].lower()}
        if keys & seen or len(long.split()) < debian_descriptions.MIN_WORDS:
            continue
        entries = [translated[code].get(package) for code in languages]
        # Up to date (same English text) and translated in every language.
        if any(e is None or e[0] != md5 or e[2] == long for e in entries):
            continue
        seen |= keys
        for code, entry in zip(languages, entries, strict=True):
            assert entry is not None
            docs.append(Doc(f"{code}/{package}", entry[2], languages[code], package))
        packages += 1
        if packages == n_packages:
            break
    return docs


# -- the copies set ---------------------------------------------------------------


def copies(n_copies: int, cache: Path) -> list[Doc]:
    """Python's documentation sections, and a copy of ``n_copies`` of them."""
    items = debian.kept(python_sections.build(cache))
    originals = [Doc(i.id, i.content, "ENGLISH", i.id) for i in items]
    return [*originals, *copied(originals, n_copies)]


def copied(originals: list[Doc], n_copies: int) -> list[Doc]:
    """A copy of ``n_copies`` of the originals of several paragraphs, each kind of
    copy in turn; an added paragraph comes from a document that has no copy."""
    rng = random.Random(SEED)
    long = [d for d in originals if len(_paragraphs(d.content)) >= 3]
    chosen = rng.sample(long, min(n_copies, len(long)))
    others = [d for d in originals if d not in chosen] or originals
    words = [w for d in others for w in d.content.split()]
    docs = []
    for n, doc in enumerate(chosen):
        kind, edit = EDITS[n % len(EDITS)]
        content = edit(doc.content, rng, words, others)
        docs.append(Doc(f"copy-{kind}/{doc.id}", content, doc.language, doc.id, kind))
    return docs


def _paragraphs(text: str) -> list[str]:
    return [p for p in text.split("\n\n") if p.strip()]


def _exact(text: str, *_) -> str:
    return text


def _words_changed(text: str, rng: random.Random, words: list[str], _) -> str:
    """Three words replaced by words of other documents."""
    tokens = text.split(" ")
    for i in rng.sample(range(len(tokens)), 3):
        tokens[i] = rng.choice(words)
    return " ".join(tokens)


def _paragraph_dropped(text: str, rng: random.Random, *_) -> str:
    paragraphs = _paragraphs(text)
    del paragraphs[rng.randrange(1, len(paragraphs))]
    return "\n\n".join(paragraphs)


def _paragraph_added(text: str, rng: random.Random, _, others: list[Doc]) -> str:
    paragraphs = _paragraphs(text)
    added = rng.choice(_paragraphs(rng.choice(others).content))
    paragraphs.insert(rng.randrange(1, len(paragraphs) + 1), added)
    return "\n\n".join(paragraphs)


def _layout_changed(text: str, *_) -> str:
    """Lower case, lines of a paragraph joined, a double space between sentences."""
    paragraphs = (" ".join(p.split("\n")) for p in _paragraphs(text.lower()))
    return "\n\n\n".join(p.replace(". ", ".  ") for p in paragraphs)


EDITS: list[tuple[str, Callable[..., str]]] = [
    ("exact", _exact),
    ("words", _words_changed),
    ("dropped", _paragraph_dropped),
    ("added", _paragraph_added),
    ("layout", _layout_changed),
]


# -- built-in documents of the smoke run -----------------------------------------

_SMOKE_TEXTS = {
    "harbour": {
        "ENGLISH": "The harbour office keeps the shipping ledgers of every vessel that"
        " entered the port since 1950. Clerks record the cargo, the flag and the"
        " owner of each ship.\n\nThe ledgers are open to the public on weekdays.\n\n"
        "Copies of a page cost one euro.",
        "FRENCH": "La capitainerie conserve les registres de tous les navires entrés"
        " dans le port depuis 1950. Les commis notent la cargaison, le pavillon et le"
        " propriétaire de chaque navire.\n\nLes registres sont ouverts au public en"
        " semaine.",
        "GERMAN": "Das Hafenamt führt die Schiffsregister aller Schiffe, die seit 1950"
        " in den Hafen eingelaufen sind. Angestellte verzeichnen Ladung, Flagge und"
        " Eigner jedes Schiffes.\n\nDie Register sind werktags öffentlich zugänglich.",
    },
    "budget": {
        "ENGLISH": "The city council approved the budget for the new library after a"
        " long debate. The building will open in two years and hold a children's"
        " reading room.\n\nOpponents said the money should repair the roads first.\n\n"
        "The vote was seven to four.",
        "FRENCH": "Le conseil municipal a approuvé le budget de la nouvelle"
        " bibliothèque après un long débat. Le bâtiment ouvrira dans deux ans avec une"
        " salle de lecture pour enfants.\n\nLes opposants voulaient d'abord réparer"
        " les routes.",
        "GERMAN": "Der Stadtrat hat nach langer Debatte das Budget für die neue"
        " Bibliothek genehmigt. Das Gebäude öffnet in zwei Jahren und erhält einen"
        " Lesesaal für Kinder.\n\nGegner meinten, das Geld solle zuerst die Straßen"
        " reparieren.",
    },
    "vaccine": {
        "ENGLISH": "Researchers tested a new vaccine on three thousand volunteers. The"
        " trial found few side effects and a strong immune response.\n\nThe results"
        " will be published next spring after a review.\n\nThe trial was paid for"
        " by a public fund.",
        "FRENCH": "Des chercheurs ont testé un nouveau vaccin sur trois mille"
        " volontaires. L'essai a montré peu d'effets secondaires et une forte réponse"
        " immunitaire.\n\nLes résultats seront publiés au printemps prochain.",
        "GERMAN": "Forscher testeten einen neuen Impfstoff an dreitausend Freiwilligen."
        " Die Studie fand wenige Nebenwirkungen und eine starke Immunantwort.\n\nDie"
        " Ergebnisse erscheinen im nächsten Frühjahr.",
    },
}


def smoke_sets() -> tuple[list[Doc], list[Doc]]:
    translated = [
        Doc(f"{topic}/{language}", text, language, topic)
        for topic, texts in _SMOKE_TEXTS.items()
        for language, text in texts.items()
    ]
    english = [
        Doc(f"{topic}/en", texts["ENGLISH"], "ENGLISH", f"{topic}/en")
        for topic, texts in _SMOKE_TEXTS.items()
    ]
    return translated, [*english, *copied(english, len(english))]


# -- measuring --------------------------------------------------------------------


@dataclass
class Figures:
    """What the results of every document of a set showed."""

    name: str
    recalls: list[float] = field(default_factory=list)
    found: int = 0  # right documents among the results
    marked: int = 0  # ... marked as they should be
    # Wrong documents marked translation or near_duplicate, by mark.
    false_marks: Counter[str] = field(default_factory=Counter)
    right_scores: list[float] = field(default_factory=list)
    wrong_scores: list[float] = field(default_factory=list)  # of wrong results
    latencies_ms: list[float] = field(default_factory=list)
    by_kind: dict[str, list[float]] = field(default_factory=dict)  # recalls

    @property
    def recall(self) -> float:
        return statistics.fmean(self.recalls) if self.recalls else 0.0

    @property
    def marked_share(self) -> float:
        return self.marked / self.found if self.found else 0.0

    def lines(self) -> list[str]:
        kinds = " ".join(
            f"{kind}={statistics.fmean(r):.3f}"
            for kind, r in sorted(self.by_kind.items())
        )
        return [
            f"{self.name}: recall@{K}={self.recall:.3f}"
            + (f" ({kinds})" if kinds else "")
            + f"; right results marked {self.marked}/{self.found}; wrong results"
            f" marked near_duplicate {self.false_marks[Relation.NEAR_DUPLICATE]},"
            f" translation {self.false_marks[Relation.TRANSLATION]}",
            f"{self.name}: scores of right results {_spread(self.right_scores)},"
            f" of wrong ones {_spread(self.wrong_scores)}",
            f"{self.name}: similar_documents p50 {_p(self.latencies_ms, 50):.1f} ms,"
            f" p99 {_p(self.latencies_ms, 99):.1f} ms",
        ]


def _spread(values: list[float]) -> str:
    if not values:
        return "none"
    q = np.percentile(values, [0, 5, 50, 95, 100])
    return "min {:.3f} p5 {:.3f} p50 {:.3f} p95 {:.3f} max {:.3f}".format(*q)


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def measure_set(
    es, es_url: str, name: str, docs: list[Doc], model: str, mark: Relation
) -> Figures:
    """Vectorize the set as a project, then ask each document's similar ones."""
    project = f"bench-similar-{uuid.uuid4().hex[:8]}"
    items = [{"id": d.id, "content": d.content, "language": d.language} for d in docs]
    figures = Figures(name)
    try:
        started = time.perf_counter()
        await quality.index_documents(es, project, items)
        with tempfile.TemporaryDirectory() as tmp:
            config = MLWorkerConfig(es_address=es_url, vector_db_uri=tmp)
            vector_db = store.connect(tmp)
            plan = await quality.vectorize(es, vector_db, config, project, model)
            table = store.open_table(vector_db, project)
            table.optimize()  # every row in the indices, as upkeep leaves a large table
            print(
                f"{name}: {len(docs)} documents, {table.count_rows()} passages,"
                f" vectorized in {time.perf_counter() - started:.1f}s; model"
                f" {plan.summary.model} ({plan.summary.model_choice})",
                flush=True,
            )
            # Warm-up: the file and index caches.
            similar_documents(table, quality.doc_id(docs[0].id), n_similar=K)
            for doc in docs:
                started = time.perf_counter()
                hits = similar_documents(table, quality.doc_id(doc.id), n_similar=K)
                figures.latencies_ms.append((time.perf_counter() - started) * 1000)
                _count(figures, doc, docs, hits, mark)
    finally:
        await es.indices.delete(index=project, ignore_unavailable=True)
    return figures


def _count(
    figures: Figures, doc: Doc, docs: list[Doc], hits: list[dict], mark: Relation
) -> None:
    """Add one document's results to the figures."""
    by_id = {quality.doc_id(d.id): d for d in docs}
    right = {quality.doc_id(d.id) for d in docs if d.group == doc.group} - {
        quality.doc_id(doc.id)
    }
    if not right:
        return  # an original without a copy: only a distractor
    found = [h for h in hits if h["doc_id"] in right]
    recall = len(found) / min(len(right), K)
    figures.recalls.append(recall)
    kind = doc.kind or next(
        (by_id[h].kind for h in right if by_id[h].kind), ""
    )  # an original counts under its copy's kind
    if kind:
        figures.by_kind.setdefault(kind, []).append(recall)
    figures.found += len(found)
    figures.marked += sum(h["relation"] == mark for h in found)
    for hit in hits:
        if hit["doc_id"] in right:
            figures.right_scores.append(hit["score"])
        else:
            figures.wrong_scores.append(hit["score"])
            figures.false_marks[hit["relation"]] += 1


def synthetic_latency(rows: int, queries: int) -> tuple[list[float], list[float]]:
    """similar_documents' latency on bench.search_latency's synthetic table:
    unfiltered, and filtered by language (which asks the index once more, for the
    table's background)."""
    setup = Setup(rows)
    if not (setup.table_dir() / "built.json").exists():
        print(f"building a table of {rows} passages in {setup.table_dir()}", flush=True)
        # spawn: a process that has used LanceDB must never be forked.
        child = multiprocessing.get_context("spawn").Process(
            target=build_table, args=(setup,)
        )
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"building the table failed (exit code {child.exitcode})")
    table = store.open_table(
        store.connect(str(setup.table_dir() / "vectors")), SYNTHETIC_PROJECT
    )
    # Its documents are doc-0000000... of 4 passages each (bench.search_latency).
    n_docs = rows // 4
    doc_ids = [f"doc-{i * (n_docs // queries):07d}" for i in range(queries)]
    for doc_id in doc_ids[:5]:  # warm-up
        similar_documents(table, doc_id, n_similar=10)
    latencies: dict[bool, list[float]] = {False: [], True: []}
    english = Filters.of(languages="ENGLISH")  # every row's: the same results
    for doc_id in doc_ids:
        for filtered in (False, True):
            started = time.perf_counter()
            hits = similar_documents(
                table, doc_id, n_similar=10, filters=english if filtered else None
            )
            latencies[filtered].append((time.perf_counter() - started) * 1000)
            assert len(hits) == 10, f"only {len(hits)} documents similar to {doc_id}"
    return latencies[False], latencies[True]


async def run(args: argparse.Namespace, es_url: str) -> list[str]:
    if args.smoke:
        translated, copy_set = smoke_sets()
        copy_models = [AUTO_MODEL]
    else:
        translated = translations(args.packages, args.cache)
        copy_set = copies(args.copies, args.cache)
        copy_models = [AUTO_MODEL, MULTILINGUAL]
    es = es_client(es_url)
    try:
        t = await measure_set(
            es, es_url, "translations", translated, MULTILINGUAL, Relation.TRANSLATION
        )
        c = [
            await measure_set(
                es,
                es_url,
                f"copies ({model})",
                copy_set,
                model,
                Relation.NEAR_DUPLICATE,
            )
            for model in copy_models
        ]
    finally:
        await es.close()
    lines = [line for figures in (t, *c) for line in figures.lines()]
    synthetic = "skipped"
    if args.rows:
        latencies, filtered = synthetic_latency(args.rows, SYNTHETIC_QUERIES)
        synthetic = f"{_p(latencies, 50):.1f}"
        lines.append(
            f"synthetic table of {args.rows} passages: similar_documents p50"
            f" {_p(latencies, 50):.1f} ms, p99 {_p(latencies, 99):.1f} ms; filtered"
            f" by language p50 {_p(filtered, 50):.1f} ms, p99 {_p(filtered, 99):.1f} ms"
        )
    latencies = [ms for figures in (t, *c) for ms in figures.latencies_ms]
    least_marked = min(c, key=lambda f: f.marked_share)
    lines.append(
        f"similar translations_recall5={t.recall:.3f}"
        f" translation_marked={t.marked}/{t.found}"
        f" false_translation={t.false_marks[Relation.TRANSLATION]}"
        f" copies_recall5={min(f.recall for f in c):.3f}"
        f" near_duplicate_marked={least_marked.marked}/{least_marked.found}"
        f" false_near_duplicate={sum(f.false_marks[Relation.NEAR_DUPLICATE] for f in (t, *c))}"
        f" p50_ms={_p(latencies, 50):.1f} p99_ms={_p(latencies, 99):.1f}"
        f" synthetic_rows={args.rows} synthetic_p50_ms={synthetic}"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--packages", type=int, default=PACKAGES, help="translated packages"
    )
    parser.add_argument(
        "--copies", type=int, default=COPIES, help="documents copied (5 kinds)"
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=SYNTHETIC_ROWS,
        help="passages of the synthetic table timed (0: none)",
    )
    parser.add_argument(
        "--es-url", help="Elasticsearch to use (default: an emulator started here)"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=debian.DEFAULT_CACHE,
        help=f"downloaded packages and built sets (default: {debian.DEFAULT_CACHE})",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a few built-in documents and no synthetic table: checks the bench runs",
    )
    args = parser.parse_args()
    if args.smoke:
        args.rows = 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with ExitStack() as stack:
        es_url = args.es_url or stack.enter_context(es_emulator())
        lines = asyncio.run(run(args, es_url))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
