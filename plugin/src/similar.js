/*
 * Similar documents on a document's page (task `find_similar_documents`): the
 * project's documents most like the one shown, best first, near-duplicates and
 * translations marked, each with the passage of the shown document and the
 * passage of the similar one that matched best. Asked when the panel is opened.
 */
import { docText, el } from './dom.js'
import { SEARCH_GROUP, Tasks, describe } from './tasks.js'
import { hitItem } from './search.js'

const SIMILAR = 'find_similar_documents'
const N_SIMILAR = 10
const RELATIONS = {
  near_duplicate: 'Near-duplicate',
  translation: 'Translation'
}

function similarItem(core, project, hit) {
  const label = RELATIONS[hit.relation]
  const extra = label
    ? [el('span', { className: 'ml-worker-relation', attrs: { 'data-relation': hit.relation }, text: label })]
    : []
  const item = hitItem(core, project, hit, { extra })
  if (hit.source_snippet) {
    item.append(el('div', { className: 'ml-worker-pair' }, [
      el('span', { className: 'ml-worker-pair-label', text: 'In this document' }),
      docText('p', 'ml-worker-passage ml-worker-source-passage', hit.source_snippet)
    ]))
  }
  return item
}

export function mountSimilar(root, { core, watch }) {
  const tasks = new Tasks(core)
  let controller = null
  let shownFor = null
  let current = null

  const state = el('div', { className: 'ml-worker-state', attrs: { role: 'status', 'aria-live': 'polite' } })
  const results = el('ol', { className: 'ml-worker-results' })
  const panel = el('details', {
    className: 'ml-worker ml-worker-similar',
    on: { toggle: () => panel.open && load() }
  }, [
    el('summary', { className: 'ml-worker-title', text: 'Similar documents' }),
    state,
    results
  ])
  root.append(panel)

  async function load() {
    const key = current && `${current.index}/${current.id}`
    if (!current || key === shownFor) {
      return
    }
    shownFor = key
    controller?.abort()
    controller = new AbortController()
    const { signal } = controller
    const project = current.index
    results.replaceChildren()
    state.dataset.state = 'searching'
    state.textContent = 'Looking for similar documents…'
    try {
      const args = { project, doc_id: current.id, n_similar: N_SIMILAR }
      const hits = await tasks.run(SIMILAR, args, SEARCH_GROUP, { signal })
      if (signal.aborted) {
        return
      }
      const others = (hits ?? []).filter(hit => hit.doc_id !== current.id)
      results.replaceChildren(...others.map(hit => similarItem(core, project, hit)))
      state.dataset.state = 'done'
      state.textContent = others.length ? '' : 'No similar document in this project.'
    }
    catch (error) {
      if (signal.aborted) {
        return
      }
      shownFor = null  // asked again on the next opening
      const { kind, message } = describe(error, { refusedWhat: 'this document' })
      state.dataset.state = `error:${kind}`
      state.textContent = message
    }
  }

  // The document of the page: the route of a document (Datashare's `document` and
  // `document-standalone` routes, params index, id and routing).
  watch(() => {
    const { params = {} } = core.route
    return params.index && params.id ? `${params.index}\n${params.id}\n${params.routing ?? ''}` : ''
  }, (key) => {
    const [index, id, routing] = key ? key.split('\n') : []
    current = index ? { index, id, routing } : null
    panel.hidden = !current
    controller?.abort()
    shownFor = null
    results.replaceChildren()
    state.textContent = ''
    if (panel.open) {
      load()
    }
  })

  return {
    destroy() {
      controller?.abort()
    }
  }
}
