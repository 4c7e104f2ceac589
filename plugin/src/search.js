/*
 * Semantic search on a project's search page (task `find_most_similar`): a query,
 * its mode, how many documents and the lowest score; each document found with its
 * title, path, score and best passage, the query's words marked, and a link that
 * opens it in Datashare. The project's vectors are shown above the query.
 */
import { decimals, docText, el, highlighted, queryTerms, routeLink } from './dom.js'
import { SEARCH_GROUP, Tasks, describe } from './tasks.js'
import { VectorsPanel } from './vectors.js'

const SEARCH = 'find_most_similar'
const MODES = [
  ['hybrid', 'Meaning and words (hybrid)'],
  ['vector', 'Meaning only (vector)'],
  ['text', 'Words only (text)']
]
const DEFAULT_N = 10

function pathName(path) {
  return String(path ?? '').split(/[\\/]/).filter(Boolean).pop() ?? ''
}

/** A document found: its link, score, path and passage. */
export function hitItem(core, project, hit, { terms = [], extra = [] } = {}) {
  const location = {
    name: 'document',
    params: { index: project, id: hit.doc_id, routing: hit.root_id ?? hit.doc_id },
    query: { ...core.route.query }
  }
  const title = hit.title || pathName(hit.path) || hit.doc_id
  const head = el('div', { className: 'ml-worker-hit-head' }, [
    routeLink(core, location, 'ml-worker-hit-title', title),
    ...extra,
    el('span', { className: 'ml-worker-score', attrs: { title: 'score, from 0 to 1' }, text: decimals(hit.score, 3) })
  ])
  return el('li', { className: 'ml-worker-hit', attrs: { 'data-doc-id': hit.doc_id } }, [
    head,
    docText('div', 'ml-worker-hit-path', hit.path ?? ''),
    highlighted('p', 'ml-worker-passage', hit.snippet ?? '', terms)
  ])
}

export function mountSearch(root, { core, watch }) {
  const tasks = new Tasks(core)
  const vectors = new VectorsPanel(core, tasks)
  let controller = null

  const projectSelect = el('select', {
    className: 'form-select form-select-sm ml-worker-project',
    attrs: { name: 'project', 'aria-label': 'Project', hidden: true },
    on: { change: () => vectors.show(projectSelect.value) }
  })
  const query = el('input', {
    className: 'form-control ml-worker-query',
    attrs: {
      type: 'search',
      name: 'query',
      required: true,
      placeholder: 'Describe what you are looking for',
      'aria-label': 'Semantic search query'
    }
  })
  const mode = el('select', {
    className: 'form-select form-select-sm ml-worker-mode',
    attrs: { name: 'mode' }
  }, MODES.map(([value, label]) => el('option', { attrs: { value }, text: label })))
  const n = el('input', {
    className: 'form-control form-control-sm ml-worker-n',
    attrs: { type: 'number', name: 'n', min: 1, max: 100, value: DEFAULT_N, required: true }
  })
  const minScore = el('input', {
    className: 'form-control form-control-sm ml-worker-min-score',
    attrs: { type: 'number', name: 'min-score', step: 'any', placeholder: 'none' }
  })
  const state = el('div', { className: 'ml-worker-state', attrs: { role: 'status', 'aria-live': 'polite' } })
  const results = el('ol', { className: 'ml-worker-results' })
  const form = el('form', {
    className: 'ml-worker-form',
    on: { submit: (event) => {
      event.preventDefault()
      search()
    } }
  }, [
    query,
    el('button', { className: 'btn btn-primary', attrs: { type: 'submit' }, text: 'Search' }),
    el('div', { className: 'ml-worker-options' }, [
      el('label', { className: 'ml-worker-field' }, ['Search by', mode]),
      el('label', { className: 'ml-worker-field' }, ['Documents', n]),
      el('label', { className: 'ml-worker-field' }, ['Lowest score', minScore])
    ])
  ])
  const section = el('section', { className: 'ml-worker ml-worker-search' }, [
    el('header', { className: 'ml-worker-header' }, [
      el('h2', { className: 'ml-worker-title', text: 'Semantic search' }),
      projectSelect
    ]),
    vectors.element,
    form,
    state,
    results
  ])
  root.append(section)

  function showState(kind, message, action) {
    state.replaceChildren(el('span', { text: message }))
    state.dataset.state = kind
    if (action) {
      state.append(' ', action)
    }
  }

  async function search() {
    controller?.abort()
    controller = new AbortController()
    const { signal } = controller
    const project = projectSelect.value
    const args = {
      project,
      queries: [query.value],
      n_similar: Number(n.value),
      mode: mode.value
    }
    if (minScore.value !== '') {
      args.min_score = Number(minScore.value)
    }
    results.replaceChildren()
    showState('searching', 'Searching…')
    try {
      const found = await tasks.run(SEARCH, args, SEARCH_GROUP, { signal })
      if (signal.aborted) {
        return
      }
      const hits = found?.[0] ?? []
      const terms = queryTerms(args.queries[0])
      results.replaceChildren(...hits.map(hit => hitItem(core, project, hit, { terms })))
      const told = { 0: 'No document matched.', 1: '1 document' }
      showState('done', told[hits.length] ?? `${hits.length} documents, best first`)
    }
    catch (error) {
      if (signal.aborted) {
        return
      }
      const { kind, message } = describe(error, { refusedWhat: 'this search' })
      let action = null
      if (kind === 'ProjectNotVectorized') {
        action = el('button', {
          className: 'btn btn-sm btn-outline-primary ml-worker-vectorize',
          attrs: { type: 'button' },
          text: 'Vectorize this project',
          on: { click: () => vectors.start() }
        })
      }
      showState(`error:${kind}`, message, action)
    }
  }

  // The projects the search page is on (Datashare's search store, `indices`).
  let shown = false
  watch(() => [...core.stores.useSearchStore().indices], (projects) => {
    const current = shown ? projectSelect.value : null
    shown = true
    projectSelect.replaceChildren(...projects.map(p => el('option', { attrs: { value: p }, text: p })))
    projectSelect.hidden = projects.length < 2
    projectSelect.value = projects.includes(current) ? current : projects[0] ?? ''
    if (projectSelect.value !== current) {
      results.replaceChildren()
      state.replaceChildren()
      vectors.show(projectSelect.value)
    }
  })

  return {
    destroy() {
      controller?.abort()
      vectors.destroy()
    }
  }
}
