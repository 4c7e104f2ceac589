"""The Datashare plugin in a real browser, its tasks run by the real workers.

The page is Datashare's as its server injects the plugin (``datashare_page``), on the
contract double of its frontend core (``datashare_core.js``), served by the double of
its task API with a signed-in user's session and CSRF cookies. The tasks the plugin
creates go through that double to icij-worker's task service and the session's
worker pool (``task_bridge``); the tests read what the page shows.

Stand-ins, until the workers run these tasks: ``vectorization_status`` and
``find_similar_documents`` are answered by the functions of ``STAND_INS`` below,
with the contract's shapes; a search refused for a project the user may not read
(``ProjectNotGranted``) is a stand-in's error too. Everything else is the workers'.
"""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.async_api import Page, expect

from ml_worker.es_client import es_client
from ml_worker.icij.task_client import ICIJTaskClient
from ml_worker_dev.datashare_index import (
    bulk_index,
    create_project_index,
    document_source,
)
from tests.browser.datashare_page import PLUGIN, serve_app
from tests.browser.task_bridge import StandInError, TaskBridge
from tests.corpus import datashare_corpus
from tests.datashare_double import DatashareDouble
from tests.known_items import FIRST, N_DOCS, SEARCH, seed_known_items
from tests.stack import fan_out, wait_done

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


class Statuses:
    """Stand-in of ``vectorization_status``: each project's status as a test sets
    it, a project never set being not vectorized."""

    def __init__(self) -> None:
        self.by_project: dict[str, dict] = {}

    def __call__(self, args: dict) -> dict:
        project = args["project"]
        return self.by_project.get(project) or not_vectorized(project)


def not_vectorized(project: str) -> dict:
    return {
        "project": project,
        "vectorized": False,
        "model": None,
        "model_choice": None,
        "documents": 0,
        "vectorized_documents": 0,
        "passages": 0,
        "new": 0,
        "removed": 0,
    }


def vectorized(project: str, documents: int, *, new: int = 0, removed: int = 0):
    return {
        "project": project,
        "vectorized": True,
        "model": "english",
        "model_choice": "auto: 100% ENGLISH",
        "documents": documents + new,
        "vectorized_documents": documents + removed,
        "passages": documents * 2,
        "new": new,
        "removed": removed,
    }


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


@pytest.fixture(scope="module")
def datashare(session_workers):
    with DatashareDouble(session_cookie=SESSION, login=LOGIN) as double:
        serve_app(double, {"ml-worker": PLUGIN})
        yield double


@pytest.fixture
def bridge(datashare, session_workers, known_project) -> TaskBridge:
    """Datashare's link to the workers, with this test's stand-ins."""
    datashare.requests.clear()
    # The signed-in user may read the known project (the workers check it).
    datashare.granted[:] = [known_project]
    statuses = Statuses()
    statuses.by_project[known_project] = vectorized(
        known_project, N_DOCS + len(HOSTILE_CONTENT)
    )
    return TaskBridge(
        datashare,
        session_workers.url,
        stand_ins={"vectorization_status": statuses},
    )


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


async def test_semantic_search_finds_the_known_items_first(
    page, datashare, bridge, known_project, screenshots
):
    await open_search(page, datashare, known_project)
    summary = page.locator(".ml-worker-vectors-summary")
    await expect(summary).to_have_attribute("data-state", "vectorized")
    await expect(summary).to_contain_text(f"{N_DOCS + 4} of {N_DOCS + 4} documents")

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
    await expect(top.locator(".ml-worker-score")).to_have_text(
        re.compile(r"^\d+\.\d{3}$")
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


async def test_vectorize_button_follows_the_run_to_100_percent(
    page, datashare, bridge, session_workers, es_url, screenshots
):
    project = f"test-{uuid.uuid4().hex[:10]}"
    items, doc_ids = datashare_corpus(16)
    es = es_client(es_url)
    try:
        await create_project_index(es, project)
        await bulk_index(es, project, items)
    finally:
        await es.close()
    statuses = bridge.stand_ins["vectorization_status"]
    datashare.granted.append(project)

    await open_search(page, datashare, project)
    summary = page.locator(".ml-worker-vectors-summary")
    await expect(summary).to_have_attribute("data-state", "not-vectorized")
    await page.screenshot(path=screenshots / "not-vectorized.png")
    statuses.by_project[project] = vectorized(project, len(doc_ids))
    await page.locator(".ml-worker-vectors .ml-worker-vectorize").click()

    await expect(page.locator(".ml-worker-vectors-percent")).to_have_text("100 %")
    message = page.locator(".ml-worker-vectors-message")
    await expect(message).to_contain_text(
        f"Vectorization done: {len(doc_ids)} documents"
    )
    await expect(summary).to_have_attribute("data-state", "vectorized")
    await page.screenshot(path=screenshots / "vectorized.png")

    (created,) = plugin_requests(datashare, "create_vectorization_tasks")
    assert created.query == {"group": "PYTHON_FANOUT"}
    assert {k: v for k, v in created.body["args"].items() if k != "user"} == {
        "project": project,
        "defaultProject": project,
    }
    task = datashare.tasks[created.body["id"]]
    assert (task["state"], task["progress"]) == ("DONE", 1.0)
    # The batches it created, done: nothing left running for the next tests.
    async with ICIJTaskClient(session_workers.url) as service:
        await wait_done(service, task["result"]["value"].get("tasks", []))


async def test_errors_are_told_in_words(
    page, datashare, bridge, known_project, es_url, screenshots
):
    state = page.locator(".ml-worker-state")
    # Projects the signed-in user may read, known from its first page on.
    no_index, never = (f"test-{uuid.uuid4().hex[:10]}" for _ in range(2))
    datashare.granted += [no_index, never]

    # A vectorization the workers refuse (Datashare's project has no index): why.
    await open_search(page, datashare, no_index)
    vectors = page.locator(".ml-worker-vectors")
    await expect(vectors.locator(".ml-worker-vectors-summary")).to_have_attribute(
        "data-state", "not-vectorized"
    )
    await vectors.locator(".ml-worker-vectorize").click()
    message = vectors.locator(".ml-worker-vectors-message")
    await expect(message).to_have_attribute("data-error", "UnknownProject")
    await expect(message).to_have_text("Datashare has no such project.")

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

    # Stand-in: a project the user may not read.
    def not_granted(args: dict):
        raise StandInError(
            "ProjectNotGranted", f"{LOGIN} may not read {args['project']}"
        )

    bridge.stand_ins["find_most_similar"] = not_granted
    await search(page, "offshore accounts")
    await expect(state).to_have_attribute("data-state", "error:ProjectNotGranted")
    await expect(state).to_have_text("You are not allowed to read this project.")


def similar_hit(doc_id: str, root_id: str, relation: str, score: float, **texts):
    return {
        "doc_id": doc_id,
        "root_id": root_id,
        "score": score,
        "relation": relation,
        "path": f"/leak/{doc_id}.txt",
        "title": f"{doc_id}.txt",
        "content_type": "text/plain",
        "language": "ENGLISH",
        "snippet": texts.get("snippet", f"the passage of {doc_id}"),
        "snippet_start": 0,
        "snippet_end": 20,
        "source_snippet": texts.get("source_snippet", "the passage it matched"),
        "source_snippet_start": 0,
        "source_snippet_end": 22,
    }


async def test_similar_documents_mark_near_duplicates_and_translations(
    page, datashare, bridge, known_project, screenshots
):
    # Stand-in of find_similar_documents, with the contract's shape.
    answered = {
        "doc-0021": [
            similar_hit("doc-0030", "doc-0030", "near_duplicate", 0.981),
            similar_hit("doc-0021-fr", "doc-0021-fr", "translation", 0.874),
            similar_hit(
                "hostile-script",
                "hostile-script",
                "similar",
                0.612,
                snippet=HOSTILE_CONTENT["hostile-script"],
                source_snippet=HOSTILE_CONTENT["hostile-img"],
            ),
        ]
    }

    def find_similar_documents(args: dict) -> list[dict]:
        if args["doc_id"] not in answered:
            raise StandInError(
                "DocumentNotVectorized", f"{args['doc_id']} has no vectors"
            )
        return answered[args["doc_id"]]

    bridge.stand_ins["find_similar_documents"] = find_similar_documents
    await page.goto(
        f"{datashare.url}/#/d/{known_project}/doc-0021/doc-0021?indices={known_project}"
    )
    panel = page.locator(".ml-worker-similar")
    await panel.locator("summary").click()
    hits = panel.locator(".ml-worker-hit")
    await expect(hits).to_have_count(3)
    await expect(hits.locator(".ml-worker-hit-title")).to_have_text(
        ["doc-0030.txt", "doc-0021-fr.txt", "hostile-script.txt"]
    )
    await expect(hits.nth(0).locator(".ml-worker-relation")).to_have_text(
        "Near-duplicate"
    )
    await expect(hits.nth(1).locator(".ml-worker-relation")).to_have_text("Translation")
    await expect(hits.nth(2).locator(".ml-worker-relation")).to_have_count(0)
    await expect(hits.locator(".ml-worker-score")).to_have_text(
        ["0.981", "0.874", "0.612"]
    )
    await expect(hits.nth(2).locator(".ml-worker-source-passage")).to_have_text(
        HOSTILE_CONTENT["hostile-img"]
    )
    assert await page.evaluate("window.__pwned") == []
    assert await page.locator(".ml-worker-similar img").count() == 0
    await page.screenshot(path=screenshots / "similar.png", full_page=True)

    (created,) = plugin_requests(datashare, "find_similar_documents")
    assert created.query == {"group": "PYTHON_SEARCH"}
    args = {k: v for k, v in created.body["args"].items() if k != "user"}
    assert args == {
        "project": known_project,
        "defaultProject": known_project,
        "doc_id": "doc-0021",
        "n_similar": 10,
    }

    # The near-duplicate opened: asked for in turn, it has no vectors, and says so.
    await hits.nth(0).locator(".ml-worker-hit-title").click()
    await expect(page).to_have_url(re.compile(f"#/d/{known_project}/doc-0030/doc-0030"))
    state = panel.locator(".ml-worker-state")
    await expect(state).to_have_attribute("data-state", "error:DocumentNotVectorized")
    await expect(state).to_have_text(
        "This document has no vectors yet: update the project's vectors to include it."
    )


async def test_project_page_shows_the_vectors_behind_the_index(
    page, datashare, bridge, known_project, screenshots
):
    statuses = bridge.stand_ins["vectorization_status"]
    statuses.by_project[known_project] = vectorized(
        known_project, 244, new=3, removed=1
    )
    await page.goto(f"{datashare.url}/#/projects/{known_project}")
    panel = page.locator(".ml-worker-project-vectors")
    summary = panel.locator(".ml-worker-vectors-summary")
    await expect(summary).to_have_attribute("data-state", "behind")
    await expect(summary).to_have_text(
        "245 of 247 documents vectorized · 488 passages · 3 new since the last run"
        " · 1 removed since the last run · model english"
    )
    await expect(panel.locator(".ml-worker-vectorize")).to_have_text(
        "Update the vectors"
    )
    await page.screenshot(path=screenshots / "project.png")
