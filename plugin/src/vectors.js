/*
 * A project's vectors: whether it is vectorized and how far its vectors are behind
 * its index (task `vectorization_status`), the live progress of a vectorization
 * (task `create_vectorization_tasks`, its progress read from the task as Datashare
 * has it from the workers; found again by the task list after a reload), what the
 * run did (its result: ml-worker's `VectorizationSummary`), and the button that
 * starts one.
 *
 * `vectorization_status` answers `{project, vectorized, model, model_choice,
 * documents, vectorized_documents, passages, new, removed, exact}`: `documents`
 * indexed, `vectorized_documents` in the vectors (those `removed` from the index
 * since included), `new` indexed without vectors; `exact` false when `new` and
 * `removed` are only the difference of the counts (a very large project).
 */
import { decimals, el } from './dom.js'
import { FANOUT_GROUP, SEARCH_GROUP, describe } from './tasks.js'

const STATUS = 'vectorization_status'
const VECTORIZE = 'create_vectorization_tasks'

// What a run did with the documents it read, told when not none, with their words.
const RUN_COUNTS = [
  ['new', 'new'],
  ['changed', 'changed'],
  ['unchanged', 'unchanged'],
  ['missing', 'gone from the index during the run'],
  ['failed', 'failed']
]

function plural(n, word, words = [word, `${word}s`]) {
  return `${n} ${n === 1 ? words[0] : words[1]}`
}

function notVectorized(project, status) {
  const documents = status?.documents ? ` (${plural(status.documents, 'document')} indexed)` : ''
  return `${project} is not vectorized${documents}: semantic search and similar documents need its vectors.`
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
    this._clearMessage()
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
    this._clearMessage()
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
    this.summary.title = status?.model_choice ?? ''
    if (!status?.vectorized) {
      this._summary('not-vectorized', notVectorized(this.project, status))
      this.button.textContent = 'Vectorize this project'
      return
    }
    // Counts past a size are the difference of the table's and the index's.
    const about = status.exact === false ? 'about ' : ''
    const indexedWithVectors = Math.max(status.vectorized_documents - status.removed, 0)
    const parts = [`${about}${indexedWithVectors} of ${plural(status.documents, 'document')} vectorized`]
    parts.push(plural(status.passages, 'passage'))
    if (status.new) {
      parts.push(`${about}${status.new} new since the last run`)
    }
    if (status.removed) {
      parts.push(`${about}${status.removed} removed since the last run`)
    }
    if (status.model) {
      parts.push(`model ${status.model}`)
    }
    const behind = status.new || status.removed
    this._summary(behind ? 'behind' : 'vectorized', parts.join(' · '))
    this.button.textContent = behind ? 'Update the vectors' : 'Vectorize again'
  }

  /** What the run did, in words; `data-failed` set when documents failed. */
  _runSummary(result) {
    if (!result || typeof result !== 'object') {
      return 'Vectorization done.'
    }
    const read = `${plural(result.documents ?? 0, 'document')} in ${plural(result.batches ?? 0, 'batch', ['batch', 'batches'])}`
    const counts = RUN_COUNTS.filter(([key]) => result[key]).map(([key, words]) => `${result[key]} ${words}`)
    let text = `Vectorization done: ${read}${counts.length ? `: ${counts.join(', ')}` : ''}.`
    if (result.removed) {
      text += ` ${result.removed} removed from the vectors, gone from the index.`
    }
    if (result.failed) {
      this.message.dataset.failed = String(result.failed)
      const first = result.failures?.[0]
      text += ` Some batches failed${first ? ` (${first})` : ''}: vectorize again to retry them.`
    }
    return text
  }

  _failed(error) {
    const { kind, message } = describe(error, { refusedWhat: 'the vectorization' })
    if (kind === 'ProjectNotVectorized') {
      this._summary('not-vectorized', notVectorized(this.project))
    }
    else {
      this._summary('error', '')
      this.message.textContent = message
      this.message.dataset.error = kind
    }
    this._setProgress(null)
    // A user not granted the project could not vectorize it either.
    this.button.hidden = kind === 'ProjectNotGranted'
    this.button.disabled = false
  }

  _clearMessage() {
    this.message.textContent = ''
    delete this.message.dataset.error
    delete this.message.dataset.failed
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
