/*
 * A project's vectors: whether it is vectorized and how far its vectors are behind
 * its index (task `vectorization_status`), the live progress of a vectorization
 * (task `create_vectorization_tasks`, found again by the task list after a reload),
 * and the button that starts one.
 */
import { decimals, el } from './dom.js'
import { FANOUT_GROUP, SEARCH_GROUP, describe } from './tasks.js'

const STATUS = 'vectorization_status'
const VECTORIZE = 'create_vectorization_tasks'

// A run's counts worth telling, in the order told, with their words (one, more);
// `tasks` is the list of batch tasks of an icij-worker run.
const RUN_COUNTS = [
  ['documents', ['document', 'documents']],
  ['batches', ['batch', 'batches']],
  ['tasks', ['batch', 'batches']],
  ['new', ['new', 'new']],
  ['changed', ['changed', 'changed']],
  ['unchanged', ['unchanged', 'unchanged']],
  ['removed', ['removed', 'removed']],
  ['failed', ['failed', 'failed']]
]

function count(value) {
  return Array.isArray(value) ? value.length : value
}

function plural(n, word, words = [word, `${word}s`]) {
  return `${n} ${n === 1 ? words[0] : words[1]}`
}

export class VectorsPanel {
  constructor(core, tasks) {
    this.core = core
    this.tasks = tasks
    this.project = null
    this.controller = null
    this.summary = el('p', { className: 'ml-worker-vectors-summary', attrs: { 'data-state': 'loading' } })
    this.progress = el('progress', { attrs: { max: 1, value: 0, hidden: true } })
    this.percent = el('span', { className: 'ml-worker-vectors-percent', attrs: { hidden: true } })
    this.message = el('p', { className: 'ml-worker-vectors-message', attrs: { role: 'status', 'aria-live': 'polite' } })
    this.button = el('button', {
      className: 'btn btn-sm btn-outline-primary ml-worker-vectorize',
      attrs: { type: 'button', hidden: true },
      text: 'Vectorize this project',
      on: { click: () => this.start() }
    })
    this.element = el('div', { className: 'ml-worker-vectors' }, [
      el('div', { className: 'ml-worker-vectors-line' }, [this.summary, this.button]),
      el('div', { className: 'ml-worker-vectors-progress' }, [this.progress, this.percent]),
      this.message
    ])
  }

  /** Shows that project's vectors, following its running vectorization if any. */
  async show(project) {
    this.controller?.abort()
    this.controller = new AbortController()
    const { signal } = this.controller
    this.project = project
    this.message.textContent = ''
    this._setProgress(null)
    if (!project) {
      this._summary('none', 'No project selected.')
      this.button.hidden = true
      return
    }
    this._summary('loading', 'Reading the project\'s vectors…')
    this.button.hidden = true
    try {
      const [running] = await this.tasks.unfinished(VECTORIZE, args => args.project === project)
      if (signal.aborted) {
        return
      }
      if (running) {
        await this._follow(running.id, signal)
      }
      else {
        await this._status(signal)
      }
    }
    catch (error) {
      if (!signal.aborted) {
        this._failed(error)
      }
    }
  }

  /** Starts a vectorization of the project and follows it. */
  async start() {
    this.controller?.abort()
    this.controller = new AbortController()
    const { signal } = this.controller
    this.button.disabled = true
    this.message.textContent = ''
    this._summary('running', 'Vectorization queued…')
    this._setProgress(0)
    try {
      const id = await this.tasks.create(VECTORIZE, { project: this.project }, FANOUT_GROUP)
      await this._follow(id, signal)
    }
    catch (error) {
      if (!signal.aborted) {
        this._failed(error)
      }
    }
  }

  destroy() {
    this.controller?.abort()
  }

  async _follow(id, signal) {
    this.button.hidden = false
    this.button.disabled = true
    this._summary('running', 'Vectorizing…')
    const result = await this.tasks.follow(id, {
      signal,
      onUpdate: (task) => {
        this._summary('running', task.state === 'QUEUED' ? 'Vectorization queued…' : 'Vectorizing…')
        this._setProgress(task.state === 'DONE' ? 1 : task.progress ?? 0)
      }
    })
    if (signal.aborted) {
      return
    }
    this.message.textContent = this._runSummary(result)
    await this._status(signal)
  }

  async _status(signal) {
    const status = await this.tasks.run(STATUS, { project: this.project }, SEARCH_GROUP, { signal })
    if (signal.aborted) {
      return
    }
    this.button.disabled = false
    this.button.hidden = false
    if (!status?.vectorized) {
      this._summary('not-vectorized', `${this.project} is not vectorized: semantic search and similar documents need its vectors.`)
      this.button.textContent = 'Vectorize this project'
      return
    }
    const parts = [`${status.vectorized_documents} of ${plural(status.documents, 'document')} vectorized`]
    if (status.passages !== undefined) {
      parts.push(plural(status.passages, 'passage'))
    }
    if (status.new) {
      parts.push(`${status.new} new since the last run`)
    }
    if (status.removed) {
      parts.push(`${status.removed} removed since the last run`)
    }
    if (status.model) {
      parts.push(`model ${status.model}`)
    }
    const behind = status.new || status.removed
    this._summary(behind ? 'behind' : 'vectorized', parts.join(' · '))
    this.summary.title = status.model_choice ?? ''
    this.button.textContent = behind ? 'Update the vectors' : 'Vectorize again'
  }

  _runSummary(result) {
    const told = new Set()
    const parts = []
    for (const [key, words] of RUN_COUNTS) {
      if (result?.[key] !== undefined && !told.has(words[1])) {
        told.add(words[1])
        parts.push(plural(count(result[key]), null, words))
      }
    }
    return parts.length ? `Vectorization done: ${parts.join(', ')}.` : 'Vectorization done.'
  }

  _failed(error) {
    const { kind, message } = describe(error, { refusedWhat: 'the vectorization' })
    if (kind === 'ProjectNotVectorized') {
      this._summary('not-vectorized', `${this.project} is not vectorized: semantic search and similar documents need its vectors.`)
    }
    else {
      this._summary('error', '')
      this.message.textContent = message
      this.message.dataset.error = kind
    }
    this._setProgress(null)
    this.button.hidden = false
    this.button.disabled = false
  }

  _summary(state, text) {
    this.summary.dataset.state = state
    this.summary.textContent = text
    if (state !== 'error') {
      delete this.message.dataset.error
    }
  }

  _setProgress(value) {
    const shown = value !== null
    this.progress.hidden = !shown
    this.percent.hidden = !shown
    if (shown) {
      this.progress.value = value
      this.percent.textContent = `${decimals(value * 100, 0)} %`
    }
  }
}
