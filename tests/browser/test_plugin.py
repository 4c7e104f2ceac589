"""The Datashare plugin in a real browser, its tasks run by the real workers.

The page is Datashare's as its server injects the plugin (``datashare_page``), on the
contract double of its frontend core (``datashare_core.js``), served by the double of
its task API with a signed-in user's session and CSRF cookies. Every task the plugin
creates goes through that double to icij-worker's task service and the session's
worker pool (``task_bridge``), the signed-in user and its grants in its arguments:
searches, statuses, vectorizations, similar documents and refusals are the
workers'. The tests read what the page shows, and hold it to the workers' answers
as Datashare stored them.
"""

from __future__ import annotations

import re
import uuid
from decimal import ROUND_HALF_UP, Decimal

import pytest
from playwright.async_api import Page, expect

from ml_worker.config import MLWorkerConfig
from ml_worker.es_client import es_client
from ml_worker.icij.task_client import ICIJTaskClient
from ml_worker_dev.datashare_index import (
    bulk_index,
    create_project_index,
    document_source,
)
from tests.browser.datashare_page import PLUGIN, serve_app
from tests.corpus import datashare_corpus
from tests.datashare_double import DatashareDouble
from tests.known_items import FIRST, N_DOCS, SEARCH, seed_known_items
from tests.stack import fan_out
from tests.task_bridge import TaskBridge

pytestmark = pytest.mark.browser

SESSION = "journalist-session"
CSRF = "journalist-csrf"
LOGIN = "journalist"
# Long enough for a first search, which loads the search worker's model, on a
# loaded machine.
expect.set_options(timeout=60_000)

# Documents written to do harm if their text became markup: each would add to
# window.__pwned, or reorder or hide text.
HOSTILE_CONTENT = {
    "hostile-script": (
        "The ledger of the lighthouse trust <script>window.__pwned.push('script')"
        "</script> lists every payment."
    ),
    "hostile-img": (
        "The ledger of the lighthouse trust <img src=x "
        "onerror=\"window.__pwned.push('img')\"> lists every payment."
    ),
    "hostile-link": (
        'The ledger of the lighthouse trust <a href="javascript:window.__pwned'
        ".push('link')\">open the ledger</a> lists every payment."
    ),
    "hostile-bidi": (
        "The ledger of the lighthouse trust \u202etxt.exe\u202c lists\u0007 every"
        "\u0000 payment \u2066hidden\u2069."
    ),
}
HOSTILE_TITLE = "<img src=x onerror=\"window.__pwned.push('title')\">"
HOSTILE_PATH = "/leak/<svg onload=\"window.__pwned.push('path')\">.txt"
# Their one word no other document of the project has.
HOSTILE_QUERY = "ledger"
UNSAFE_CHARACTERS = "\u202e\u202c\u2066\u2069\u0007\u0000"


def _hostile_items() -> list[tuple[str, dict, None]]:
    return [
        (doc_id, document_source(text, path=HOSTILE_PATH, title=HOSTILE_TITLE), None)
        for doc_id, text in HOSTILE_CONTENT.items()
    ]


@pytest.fixture(scope="module")
async def known_project(session_workers, es_url) -> str:
    """The known items and the hostile documents, vectorized by the workers."""
    project = f"test-{uuid.uuid4().hex[:10]}"
    es = es_client(es_url)
    try:
        await seed_known_items(es, project)
        await bulk_index(es, project, _hostile_items())
    finally:
        await es.close()
    async with ICIJTaskClient(session_workers.url) as service:
        # The workers' batch size: 4 batches, not the 31 of the known items' 8.
        await fan_out(service, project)
    return project


# A memo, a copy of it scanned again (a word changed, its lines broken otherwise),
# its French translation, and a document on its subject with markup in it: in a
# project of ordinary documents, what the workers' similar documents mark.
MEMO = (
    "Internal memo, 14 March 2019. Baltic Marine Works won the Klaipeda harbour"
    " dredging contract, worth 4.2 million euros, two weeks before the tender"
    " closed. Director Karl Jensen asked the evaluation committee to score the bids"
    " of Nordsee Bagger and Van Oord after he had signed the award. Invoices from"
    " Jensen Survey OU for soundings that never took place were paid from the"
    " port's maintenance budget, and the minutes of the 2 April meeting were"
    " rewritten to show a unanimous vote. KPMG's auditors were told the original"
    " minutes had been lost in the move to Naujoji Uosto street."
)
MEMO_COPY = " ".join(MEMO.replace("two weeks", "three weeks").split()).replace(
    ". ", ".\n\n"
)
MEMO_FR = (
    "Note interne, 14 mars 2019. Baltic Marine Works a remporté le contrat de"
    " dragage du port de Klaipeda, d'un montant de 4,2 millions d'euros, deux"
    " semaines avant la clôture de l'appel d'offres. Le directeur Karl Jensen a"
    " demandé au comité d'évaluation de noter les offres de Nordsee Bagger et de Van"
    " Oord après avoir signé l'attribution. Les factures de Jensen Survey OU pour"
    " des sondages jamais réalisés ont été payées sur le budget d'entretien du port,"
    " et le procès-verbal de la réunion du 2 avril a été réécrit pour faire"
    " apparaître un vote unanime. On a dit aux auditeurs de KPMG que le"
    " procès-verbal original avait été perdu lors du déménagement rue Naujoji Uosto."
)
HOSTILE_SIMILAR = (
    "The ledger of the Klaipeda harbour dredging contract <script>window.__pwned"
    ".push('similar')</script> lists every payment Baltic Marine Works made to"
    " Jensen Survey OU."
)
# Indexed after the project's vectorization: it has no vectors.
LATE_MEMO = "A memo filed after the project was vectorized."


def _similar_items() -> list[tuple[str, dict, None]]:
    def item(doc_id: str, text: str, **source) -> tuple[str, dict, None]:
        path = source.pop("path", f"/leak/memos/{doc_id}.txt")
        return doc_id, document_source(text, path=path, **source), None

    return [
        item("memo", MEMO),
        item("memo-copy", MEMO_COPY),
        item("memo-fr", MEMO_FR, language="FRENCH"),
        item("hostile-ledger", HOSTILE_SIMILAR, path=HOSTILE_PATH, title=HOSTILE_TITLE),
    ]


@pytest.fixture(scope="module")
async def similar_project(session_workers, es_url) -> str:
    """Ordinary documents and the memos, vectorized by the workers; then a memo
    indexed without vectors."""
    project = f"test-{uuid.uuid4().hex[:10]}"
    items, doc_ids = datashare_corpus(60)
    memos = _similar_items()
    es = es_client(es_url)
    try:
        await create_project_index(es, project)
        await bulk_index(es, project, [*items, *memos])
        async with ICIJTaskClient(session_workers.url) as service:
            summary = await fan_out(service, project)
        assert (summary["new"], summary["failed"]) == (len(doc_ids) + len(memos), 0)
        late = document_source(LATE_MEMO, path="/leak/memos/memo-late.txt")
        await bulk_index(es, project, [("memo-late", late, None)])
    finally:
        await es.close()
    return project


@pytest.fixture(scope="module")
def datashare(session_workers):
    with DatashareDouble(session_cookie=SESSION, login=LOGIN) as double:
        serve_app(double, {"ml-worker": PLUGIN})
        yield double


@pytest.fixture
def bridge(datashare, session_workers, known_project) -> TaskBridge:
    """Datashare's link to the session's workers."""
    datashare.requests.clear()
    # The signed-in user may read the known project: its grants go with every task
    # the plugin creates, and the workers check them.
    datashare.granted[:] = [known_project]
    return TaskBridge(datashare, session_workers.url)


@pytest.fixture
async def page(browser, datashare):
    context = await browser.new_context(viewport={"width": 1100, "height": 760})
    await context.add_cookies(
        [
            {"name": "_ds_session_id", "value": SESSION, "url": datashare.url},
            {"name": "_ds_csrf_token", "value": CSRF, "url": datashare.url},
        ]
    )
    # What a document's markup would do, had it run.
    await context.add_init_script("window.__pwned = []")
    page = await context.new_page()
    errors: list = []
    page.on("pageerror", lambda error: errors.append(error))
    yield page
    await context.close()
    assert not errors, f"the page raised: {errors}"


async def open_search(page: Page, datashare, project: str) -> None:
    await page.goto(f"{datashare.url}/#/?indices={project}")
    await expect(page.locator(".ml-worker-search")).to_be_visible()


async def search(page: Page, query: str, *, mode: str = "hybrid", n: int = 5) -> None:
    form = page.locator(".ml-worker-form")
    await form.locator("[name=query]").fill(query)
    await form.locator("[name=mode]").select_option(mode)
    await form.locator("[name=n]").fill(str(n))
    await form.locator("button[type=submit]").click()


def plugin_requests(datashare: DatashareDouble, name: str):
    return [
        r
        for r in datashare.requests
        if r.method == "PUT" and r.path.startswith(f"/api/task/{name}-")
    ]


def answered(datashare: DatashareDouble, request) -> dict:
    """The task a plugin's request created, as Datashare has it from the workers."""
    return datashare.tasks[request.body["id"]]


def result(datashare: DatashareDouble, request):
    return answered(datashare, request)["result"]["value"]


def last_result(datashare: DatashareDouble, name: str):
    """The workers' result of the last task of that name the plugin created."""
    return result(datashare, plugin_requests(datashare, name)[-1])


def shown(value: float, digits: int) -> str:
    """A number as the plugin shows it (JavaScript's ``toFixed``: the nearest,
    a tie rounded up)."""
    return str(Decimal(value).quantize(Decimal(1).scaleb(-digits), ROUND_HALF_UP))


async def fresh_project(es_url, n_docs: int) -> tuple[str, set[str]]:
    """A new project of ``n_docs`` documents, not vectorized; its ids."""
    project = f"test-{uuid.uuid4().hex[:10]}"
    items, doc_ids = datashare_corpus(n_docs)
    es = es_client(es_url)
    try:
        await create_project_index(es, project)
        await bulk_index(es, project, items)
    finally:
        await es.close()
    return project, doc_ids


# Every percent the vectors panel shows, in order, as the page changes it.
RECORD_PERCENTS = """
(panel) => {
  window.__percents = []
  const percent = panel.querySelector('.ml-worker-vectors-percent')
  const record = () => {
    const text = percent.hidden ? null : percent.textContent
    if (text !== null && window.__percents.at(-1) !== text) {
      window.__percents.push(text)
    }
  }
  new MutationObserver(record).observe(panel, {
    subtree: true, childList: true, characterData: true, attributes: true
  })
}
"""
# A percent strictly between 0 and 100.
RUNNING_PERCENT = re.compile(r"^[1-9]\d? %$")


async def follow_the_run(page: Page, panel, bridge: TaskBridge, datashare, screenshot):
    """Click the panel's button; the percents shown from the start of the run to
    its end, once it is done; ``screenshot``, taken while it runs, if given.

    The percents go up, from 0 to 100 %, through the progress the workers
    reported in between (as Datashare gave it to the page)."""
    await panel.evaluate(RECORD_PERCENTS)
    await panel.locator(".ml-worker-vectorize").click()
    percent = panel.locator(".ml-worker-vectors-percent")
    if screenshot is not None:
        await expect(percent).to_have_text(RUNNING_PERCENT)
        await page.screenshot(path=screenshot)
    await expect(percent).to_have_text("100 %")
    # The run told done: Datashare has its result (100 % may come before).
    await expect(panel.locator(".ml-worker-vectors-message")).to_have_text(
        re.compile(r"^Vectorization done")
    )
    percents = await page.evaluate("window.__percents")
    values = [int(p.removesuffix(" %")) for p in percents]
    assert values[0] == 0 and values[-1] == 100, percents
    assert values == sorted(values), percents
    (created,) = plugin_requests(datashare, "create_vectorization_tasks")
    reported = {int(shown(100 * p, 0)) for _, p in bridge.reported[created.body["id"]]}
    assert set(values) - {0, 100} <= reported, (percents, reported)
    return values


async def test_semantic_search_finds_the_known_items_first(
    page, datashare, bridge, known_project, screenshots
):
    await open_search(page, datashare, known_project)
    summary = page.locator(".ml-worker-vectors-summary")
    await expect(summary).to_have_attribute("data-state", "vectorized")
    n_docs = N_DOCS + len(HOSTILE_CONTENT)
    await expect(summary).to_contain_text(f"{n_docs} of {n_docs} documents vectorized")

    for query, first in zip(SEARCH["queries"], FIRST, strict=True):
        await search(page, query)
        await expect(page.locator(".ml-worker-state")).to_have_text(
            "5 documents, best first"
        )
        hits = page.locator(".ml-worker-hit")
        await expect(hits.first).to_have_attribute("data-doc-id", first)
    await page.screenshot(path=screenshots / "search.png", full_page=True)

    # The keyword's passage, the query's word marked; score and path shown.
    top = hits.first
    await expect(top.locator("mark")).to_have_text(
        ["meeting", "volcano", "observatory", "budget"]
    )
    await expect(top.locator(".ml-worker-hit-path")).to_have_text(
        "/leak/folder-4/doc-0004.txt/attachment.pdf"
    )
    # The workers' scores, from 0 to 1, each shown with three decimals.
    found = last_result(datashare, "find_most_similar")[0]
    assert all(0.0 <= hit["score"] <= 1.0 for hit in found)
    await expect(hits.locator(".ml-worker-score")).to_have_text(
        [shown(hit["score"], 3) for hit in found]
    )

    # Each created with the user's session, its CSRF header and the user as owner.
    created = plugin_requests(datashare, "find_most_similar")
    assert len(created) == len(SEARCH["queries"])
    for request in created:
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert request.cookies["_ds_session_id"] == SESSION
        assert headers["x-ds-csrf-token"] == CSRF
        assert request.query == {"group": "PYTHON_SEARCH"}
        assert request.body["args"]["user"]["id"] == LOGIN
        assert request.body["args"]["mode"] == "hybrid"
    # Typed as Datashare's task route reads a list.
    assert created[0].body["args"]["queries"] == [
        "java.util.ArrayList",
        [SEARCH["queries"][0]],
    ]

    # A result opens its document in Datashare's router: an attachment with its root.
    await top.locator(".ml-worker-hit-title").click()
    await expect(page).to_have_url(
        f"{datashare.url}/#/d/{known_project}/doc-0004-attachment/doc-0004"
        f"?indices={known_project}"
    )


async def test_hostile_documents_render_inert(
    page, datashare, bridge, known_project, screenshots
):
    await open_search(page, datashare, known_project)
    await search(page, HOSTILE_QUERY, mode="text", n=4)
    hits = page.locator(".ml-worker-hit")
    await expect(hits).to_have_count(4)
    assert sorted(
        await hits.evaluate_all("hs => hs.map(h => h.dataset.docId)")
    ) == sorted(HOSTILE_CONTENT)
    await page.screenshot(path=screenshots / "hostile.png", full_page=True)

    assert await page.evaluate("window.__pwned") == []
    # Nothing of the documents became an element: only the plugin's own tags, no
    # handler attribute, no link but the router's.
    tags = await page.locator(".ml-worker-results *").evaluate_all(
        "es => [...new Set(es.map(e => e.tagName))]"
    )
    assert set(tags) <= {"LI", "DIV", "A", "SPAN", "P", "MARK"}
    handlers = await page.evaluate(
        "[...document.querySelectorAll('*')].flatMap(e => [...e.attributes]"
        ".filter(a => a.name.startsWith('on')).map(a => a.name))"
    )
    assert handlers == []
    hrefs = await page.locator(".ml-worker-results a").evaluate_all(
        "as => as.map(a => a.getAttribute('href'))"
    )
    assert all(h.startswith(f"#/d/{known_project}/hostile-") for h in hrefs)
    # Their text shown as it is, the controls and bidirectional overrides replaced.
    titles = await page.locator(".ml-worker-hit-title").all_text_contents()
    assert titles == [HOSTILE_TITLE] * 4
    paths = await page.locator(".ml-worker-hit-path").all_text_contents()
    assert paths == [HOSTILE_PATH] * 4
    passages = " ".join(await page.locator(".ml-worker-passage").all_text_contents())
    assert "<script>window.__pwned.push('script')</script>" in passages
    assert "onerror=\"window.__pwned.push('img')\"" in passages
    assert "href=\"javascript:window.__pwned.push('link')\"" in passages
    assert "\ufffdtxt.exe\ufffd lists\ufffd every" in passages
    text = await page.evaluate("document.body.innerText")
    assert not set(UNSAFE_CHARACTERS) & set(text)
    isolated = await page.locator(".ml-worker-passage").evaluate_all(
        "ps => ps.map(p => [p.dir, getComputedStyle(p).unicodeBidi])"
    )
    assert isolated == [["auto", "isolate"]] * 4


# Documents in the workers' batches of a vectorization (their default).
BATCH_SIZE = MLWorkerConfig.model_fields["vectorize_batch_size"].default
# Three batches: the run's progress moves twice before its end.
VECTORIZED_DOCS = 2 * BATCH_SIZE + BATCH_SIZE // 2


async def test_vectorize_button_follows_the_run_to_100_percent(
    page, datashare, bridge, es_url, screenshots
):
    project, doc_ids = await fresh_project(es_url, VECTORIZED_DOCS)
    n_docs = len(doc_ids)
    batches = -(-n_docs // BATCH_SIZE)
    assert batches == 3
    datashare.granted.append(project)

    await open_search(page, datashare, project)
    panel = page.locator(".ml-worker-search .ml-worker-vectors")
    summary = panel.locator(".ml-worker-vectors-summary")
    await expect(summary).to_have_attribute("data-state", "not-vectorized")
    await expect(summary).to_have_text(
        f"{project} is not vectorized ({n_docs} documents indexed): semantic search"
        " and similar documents need its vectors."
    )
    await page.screenshot(path=screenshots / "not-vectorized.png")

    # Live: the workers' progress, between batches, then 100 %.
    percents = await follow_the_run(
        page, panel, bridge, datashare, screenshots / "vectorizing.png"
    )
    assert any(0 < p < 100 for p in percents), percents

    # What the run did, and the project's vectors after it: the workers' counts.
    (created,) = plugin_requests(datashare, "create_vectorization_tasks")
    run = result(datashare, created)
    assert (run["documents"], run["batches"]) == (n_docs, batches)
    assert (run["new"], run["changed"], run["failed"]) == (n_docs, 0, 0)
    message = panel.locator(".ml-worker-vectors-message")
    await expect(message).to_have_text(
        f"Vectorization done: {n_docs} documents in {batches} batches: {n_docs} new."
    )
    await expect(summary).to_have_attribute("data-state", "vectorized")
    status = last_result(datashare, "vectorization_status")
    assert (status["documents"], status["vectorized_documents"]) == (n_docs, n_docs)
    assert (status["new"], status["removed"], status["model"]) == (0, 0, "english")
    await expect(summary).to_have_text(
        f"{n_docs} of {n_docs} documents vectorized · {status['passages']} passages"
        " · model english"
    )
    await expect(panel.locator(".ml-worker-vectorize")).to_have_text("Vectorize again")
    await page.screenshot(path=screenshots / "vectorized.png")

    # Created as Datashare's route reads it, the user's grants with it.
    assert created.query == {"group": "PYTHON_FANOUT"}
    args = created.body["args"]
    assert {k: v for k, v in args.items() if k != "user"} == {
        "project": project,
        "defaultProject": project,
    }
    assert project in args["user"]["details"]["groups_by_applications"]["datashare"]
    task = answered(datashare, created)
    assert (task["state"], task["progress"]) == ("DONE", 1.0)


async def test_errors_are_told_in_words(
    page, datashare, bridge, known_project, es_url, screenshots
):
    state = page.locator(".ml-worker-state")
    # Projects the signed-in user may read, known from its first page on.
    no_index, never = (f"test-{uuid.uuid4().hex[:10]}" for _ in range(2))
    datashare.granted += [no_index, never]

    # A project Datashare has no index of: the workers can tell nothing of its
    # vectors, and refuse to vectorize it; the panel says why, each time.
    await open_search(page, datashare, no_index)
    vectors = page.locator(".ml-worker-search .ml-worker-vectors")
    summary = vectors.locator(".ml-worker-vectors-summary")
    message = vectors.locator(".ml-worker-vectors-message")
    await expect(summary).to_have_attribute("data-state", "error")
    await expect(message).to_have_attribute("data-error", "UnknownProject")
    await expect(message).to_have_text("Datashare has no such project.")
    await vectors.locator(".ml-worker-vectorize").click()
    # The click cleared the message and set the panel running, until the refusal.
    await expect(summary).to_have_attribute("data-state", "error")
    await expect(message).to_have_attribute("data-error", "UnknownProject")
    await expect(message).to_have_text("Datashare has no such project.")
    (refused,) = plugin_requests(datashare, "create_vectorization_tasks")
    assert answered(datashare, refused)["error"]["name"] == "UnknownProject"

    # A project never vectorized: the workers' error, and the button to start.
    es = es_client(es_url)
    try:
        await create_project_index(es, never)
        await bulk_index(es, never, datashare_corpus(4)[0])
    finally:
        await es.close()
    await open_search(page, datashare, never)
    await search(page, "offshore accounts")
    await expect(state).to_have_attribute("data-state", "error:ProjectNotVectorized")
    await expect(state).to_contain_text("This project has no vectors yet")
    await expect(state.locator(".ml-worker-vectorize")).to_be_visible()
    await page.screenshot(path=screenshots / "error-not-vectorized.png")

    await open_search(page, datashare, known_project)
    # A blank query: the workers refuse it, and say why.
    await search(page, "   ")
    await expect(state).to_have_attribute("data-state", "error:InvalidArguments")
    await expect(state).to_contain_text("The workers refused this search:")
    await expect(state).to_contain_text("blank")

    # Datashare cannot queue the task (its task service is down): a 5xx.
    service_url = bridge.service_url
    bridge.service_url = "http://127.0.0.1:9"  # the discard port: nothing listens
    try:
        await search(page, "offshore accounts")
        await expect(state).to_have_attribute("data-state", "error:failed")
        await expect(state).to_contain_text("task service failed (HTTP 500)")
    finally:
        bridge.service_url = service_url
    await page.screenshot(path=screenshots / "error-service-down.png")

    # Datashare does not answer at all.
    datashare.drop_next()
    await search(page, "offshore accounts")
    await expect(state).to_have_attribute("data-state", "error:unreachable")
    await expect(state).to_contain_text("cannot be reached")

    # A project the user may not read: its grant withdrawn, the page loaded again.
    # The workers refuse the user Datashare gives them, status and search alike.
    datashare.granted.remove(known_project)
    await page.reload()
    vectors = page.locator(".ml-worker-search .ml-worker-vectors")
    message = vectors.locator(".ml-worker-vectors-message")
    await expect(message).to_have_attribute("data-error", "ProjectNotGranted")
    await expect(message).to_have_text("You are not allowed to read this project.")
    await expect(vectors.locator(".ml-worker-vectorize")).to_be_hidden()
    await search(page, "offshore accounts")
    await expect(state).to_have_attribute("data-state", "error:ProjectNotGranted")
    await expect(state).to_have_text("You are not allowed to read this project.")
    await page.screenshot(path=screenshots / "error-not-granted.png")
    refused = answered(datashare, plugin_requests(datashare, "find_most_similar")[-1])
    assert refused["error"]["name"] == "ProjectNotGranted"
    assert refused["error"]["message"] == (
        f'user "{LOGIN}" is not granted project "{known_project}"'
    )
    user = refused["args"]["user"]
    assert user["id"] == LOGIN
    assert known_project not in user["details"]["groups_by_applications"]["datashare"]


RELATION_LABELS = {"near_duplicate": "Near-duplicate", "translation": "Translation"}


async def test_similar_documents_mark_near_duplicates_and_translations(
    page, datashare, bridge, similar_project, screenshots
):
    project = similar_project
    datashare.granted.append(project)
    await page.goto(f"{datashare.url}/#/d/{project}/memo/memo?indices={project}")
    panel = page.locator(".ml-worker-similar")
    state = panel.locator(".ml-worker-state")
    await panel.locator("summary").click()
    await expect(state).to_have_attribute("data-state", "done")

    # The workers' marks: the copy first, a near-duplicate; the translation; the
    # rest merely similar.
    (created,) = plugin_requests(datashare, "find_similar_documents")
    found = result(datashare, created)
    relations = {hit["doc_id"]: hit["relation"] for hit in found}
    assert (found[0]["doc_id"], found[0]["relation"]) == ("memo-copy", "near_duplicate")
    assert relations["memo-fr"] == "translation"
    assert {d for d, r in relations.items() if r != "similar"} == {
        "memo-copy",
        "memo-fr",
    }
    assert "hostile-ledger" in relations
    assert all(0.0 <= hit["score"] <= 1.0 for hit in found)

    # Shown as they came: in order, marked, scored, each with the pair of passages.
    hits = panel.locator(".ml-worker-hit")
    await expect(hits).to_have_count(len(found))
    ids = await hits.evaluate_all("hs => hs.map(h => h.dataset.docId)")
    assert ids == [hit["doc_id"] for hit in found]
    for i, hit in enumerate(found):
        relation = hits.nth(i).locator(".ml-worker-relation")
        if hit["relation"] in RELATION_LABELS:
            await expect(relation).to_have_text(RELATION_LABELS[hit["relation"]])
        else:
            await expect(relation).to_have_count(0)
    await expect(hits.locator(".ml-worker-score")).to_have_text(
        [shown(hit["score"], 3) for hit in found]
    )
    translation = hits.nth(list(relations).index("memo-fr"))
    await expect(translation.locator(".ml-worker-hit-title")).to_have_text(
        "memo-fr.txt"
    )
    await expect(translation.locator(".ml-worker-passage").first).to_have_text(MEMO_FR)
    await expect(translation.locator(".ml-worker-source-passage")).to_have_text(MEMO)

    # The document with markup: its title and passage as text, nothing run.
    hostile = hits.nth(list(relations).index("hostile-ledger"))
    await expect(hostile.locator(".ml-worker-hit-title")).to_have_text(HOSTILE_TITLE)
    await expect(hostile.locator(".ml-worker-passage").first).to_have_text(
        HOSTILE_SIMILAR
    )
    assert await page.evaluate("window.__pwned") == []
    assert (
        await page.locator(".ml-worker-similar img, .ml-worker-similar svg").count()
        == 0
    )
    # The panel's first results (the page, all of them, is some 3,400 pixels high).
    await panel.evaluate("p => p.scrollIntoView()")
    await page.screenshot(path=screenshots / "similar.png")

    assert created.query == {"group": "PYTHON_SEARCH"}
    args = {k: v for k, v in created.body["args"].items() if k != "user"}
    assert args == {
        "project": project,
        "defaultProject": project,
        "doc_id": "memo",
        "n_similar": 10,
    }

    # The copy opened: the memo is its near-duplicate in turn.
    await hits.nth(0).locator(".ml-worker-hit-title").click()
    await expect(page).to_have_url(re.compile(f"#/d/{project}/memo-copy/memo-copy"))
    await expect(hits.first).to_have_attribute("data-doc-id", "memo")
    await expect(hits.first.locator(".ml-worker-relation")).to_have_text(
        "Near-duplicate"
    )

    # A memo indexed after the vectorization: it has no vectors, and says so.
    await page.goto(
        f"{datashare.url}/#/d/{project}/memo-late/memo-late?indices={project}"
    )
    await expect(state).to_have_attribute("data-state", "error:DocumentNotVectorized")
    await expect(state).to_have_text(
        "This document has no vectors yet: update the project's vectors to include it."
    )


async def test_project_page_shows_the_vectors_behind_the_index(
    page, datashare, bridge, session_workers, es_url, screenshots
):
    # A project vectorized, then changed in Datashare: a document deleted, one
    # extracted again with another text, three new.
    project, doc_ids = await fresh_project(es_url, 16)
    async with ICIJTaskClient(session_workers.url) as service:
        first = await fan_out(service, project)
    assert (first["new"], first["failed"]) == (len(doc_ids), 0)
    deleted, changed = "doc-0001", "doc-0002"
    late = [f"late-{i}" for i in range(3)]
    es = es_client(es_url)
    try:
        await es.delete(index=project, id=deleted, refresh=True)
        await bulk_index(
            es,
            project,
            [
                (doc_id, document_source(text, path=f"/leak/late/{doc_id}.txt"), None)
                for doc_id, text in [
                    (changed, "The shipping company settled the lease in Geneva."),
                    *((d, f"A memo filed late, number {d[-1]}.") for d in late),
                ]
            ],
        )
    finally:
        await es.close()
    n_docs = len(doc_ids) - 1 + len(late)
    datashare.granted.append(project)

    await page.goto(f"{datashare.url}/#/projects/{project}")
    panel = page.locator(".ml-worker-project-vectors")
    summary = panel.locator(".ml-worker-vectors-summary")
    await expect(summary).to_have_attribute("data-state", "behind")
    # The workers' status: what the index has that the vectors lack, and the other
    # way round (a text extracted again is found by the next run, not here).
    status = last_result(datashare, "vectorization_status")
    assert (status["documents"], status["vectorized_documents"]) == (
        n_docs,
        len(doc_ids),
    )
    assert (status["new"], status["removed"], status["exact"]) == (len(late), 1, True)
    await expect(summary).to_have_text(
        f"{n_docs - len(late)} of {n_docs} documents vectorized"
        f" · {status['passages']} passages · 3 new since the last run"
        " · 1 removed since the last run · model english"
    )
    button = panel.locator(".ml-worker-vectorize")
    await expect(button).to_have_text("Update the vectors")
    await page.screenshot(path=screenshots / "project.png")

    # Updated from its page: the run's counts, then the vectors up to date.
    await follow_the_run(page, panel, bridge, datashare, None)
    run = last_result(datashare, "create_vectorization_tasks")
    assert (run["new"], run["changed"], run["removed"]) == (len(late), 1, 1)
    message = panel.locator(".ml-worker-vectors-message")
    await expect(message).to_have_text(
        f"Vectorization done: {n_docs} documents in 1 batch: 3 new, 1 changed,"
        f" {n_docs - 4} unchanged. 1 removed from the vectors, gone from the index."
    )
    await expect(summary).to_have_attribute("data-state", "vectorized")
    status = last_result(datashare, "vectorization_status")
    assert (status["vectorized_documents"], status["new"]) == (n_docs, 0)
    await expect(summary).to_have_text(
        f"{n_docs} of {n_docs} documents vectorized · {status['passages']} passages"
        " · model english"
    )
    await page.screenshot(path=screenshots / "project-updated.png")
