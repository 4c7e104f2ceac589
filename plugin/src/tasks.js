/*
 * ml-worker's tasks through Datashare's task API (datashare-app `TaskResource`,
 * prefix `/api/task`), called with `core.api.sendAction` (datashare-client
 * `src/api/index.js`): Datashare's own HTTP client, which sends the session cookie
 * and copies the CSRF cookie `_ds_csrf_token` into the `X-DS-CSRF-TOKEN` header
 * (`src/api/apiInstance.js`), so the plugin holds no credentials.
 *
 * A task is created with `PUT /api/task/{id}?group={group}` and the body
 * `{"@type": "Task", id, name, state, createdAt, args}`, then followed with
 * `GET /api/task/{id}` until its state is final and read with
 * `GET /api/task/{id}/result`. As Datashare 21 reads the body (datashare-tasks
 * `Task`, its Jackson mapper): each argument carries its Java type (a list as
 * `["java.util.ArrayList", [...]]`, an object with an `@type`), the arguments
 * carry the signed-in user as a `User` (`Task.getUser()` reads `args.user`; a
 * task is shown to its user only) and a project's task its project as
 * `defaultProject` (Datashare authorizes stopping a task on it); its task
 * repository fails on a task without a state or a creation date.
 */

export const SEARCH_GROUP = 'PYTHON_SEARCH'
export const FANOUT_GROUP = 'PYTHON_FANOUT'
export const FINAL_STATES = new Set(['DONE', 'ERROR', 'CANCELLED'])

// How often a task is asked for its state: soon at first, as a search answers in
// a fraction of a second, then less often for the long runs.
const FIRST_POLL_MS = 100
const LONGEST_POLL_MS = 1000

/** A task ended in ERROR (`name`: the error's class, as the worker raised it) or CANCELLED. */
export class TaskFailed extends Error {
  constructor(name, message) {
    super(message)
    this.name = name
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms)
    signal?.addEventListener('abort', () => {
      clearTimeout(timer)
      resolve()
    }, { once: true })
  })
}

/**
 * A random UUID (version 4). `crypto.randomUUID` exists in secure contexts only, and
 * Datashare is often served over plain HTTP on a private network.
 */
function uuid4() {
  const bytes = crypto.getRandomValues(new Uint8Array(16))
  bytes[6] = (bytes[6] & 0x0f) | 0x40
  bytes[8] = (bytes[8] & 0x3f) | 0x80
  const hex = [...bytes].map(b => b.toString(16).padStart(2, '0')).join('')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

/**
 * Datashare's `User` (id, name, email, provider, details) from `/api/users/me`. Its
 * grants (`details.groups_by_applications.datashare`, the only ones the workers
 * see) are those Datashare's `User.isGranted` counts: its details' projects and the
 * session's (every project, in Datashare's local mode).
 */
function userFrom(me) {
  const { projects = [], ...details } = me ?? {}
  const apps = { ...(details.groups_by_applications ?? {}) }
  const granted = new Set(Array.isArray(apps.datashare) ? apps.datashare : [])
  for (const project of projects) {
    granted.add(typeof project === 'string' ? project : project?.name)
  }
  granted.delete(undefined)
  apps.datashare = [...granted]
  return {
    '@type': 'org.icij.datashare.user.User',
    id: details.uid ?? null,
    name: details.name ?? null,
    email: details.email ?? null,
    provider: details.provider ?? 'local',
    details: { ...details, groups_by_applications: apps }
  }
}

/** A task argument with its Java type, as Datashare's task route reads it. */
function typed(value) {
  if (Array.isArray(value)) {
    return ['java.util.ArrayList', value]
  }
  if (value !== null && typeof value === 'object' && !('@type' in value)) {
    return { '@type': 'java.util.LinkedHashMap', ...value }
  }
  return value
}

export class Tasks {
  constructor(core) {
    this.core = core
    this._user = null
  }

  /** The signed-in user, as the task's owner; asked once. */
  user() {
    this._user ??= this.core.api.getUser().then(userFrom).catch((error) => {
      this._user = null
      throw error
    })
    return this._user
  }

  async create(name, args, group) {
    const id = `${name}-${uuid4()}`
    const user = await this.user()
    const all = { ...args, user }
    if (args.project !== undefined) {
      all.defaultProject = args.project
    }
    const typedArgs = Object.fromEntries(Object.entries(all).map(([k, v]) => [k, typed(v)]))
    const data = { '@type': 'Task', id, name, state: 'CREATED', createdAt: Date.now(), args: typedArgs }
    const url = `/api/task/${encodeURIComponent(id)}`
    await this.core.api.sendAction(url, { method: 'PUT', params: { group }, data })
    return id
  }

  get(id) {
    return this.core.api.sendAction(`/api/task/${encodeURIComponent(id)}`)
  }

  async result(id) {
    const value = await this.core.api.sendAction(`/api/task/${encodeURIComponent(id)}/result`)
    return value?.['@type'] === 'TaskResult' ? value.value : value
  }

  /**
   * Follows a task until it ends; `onUpdate(task)` sees each state read. Returns its
   * result, or throws TaskFailed. Returns undefined once `signal` is aborted.
   */
  async follow(id, { onUpdate, signal } = {}) {
    let wait = FIRST_POLL_MS
    for (;;) {
      const task = await this.get(id)
      if (signal?.aborted) {
        return undefined
      }
      onUpdate?.(task)
      if (task.state === 'DONE') {
        return this.result(id)
      }
      if (task.state === 'ERROR') {
        const { name = 'TaskError', message = '' } = task.error ?? {}
        throw new TaskFailed(name, message)
      }
      if (task.state === 'CANCELLED') {
        throw new TaskFailed('TaskCancelled', 'the task was cancelled')
      }
      await sleep(wait, signal)
      if (signal?.aborted) {
        return undefined
      }
      wait = Math.min(wait * 2, LONGEST_POLL_MS)
    }
  }

  async run(name, args, group, options = {}) {
    const id = await this.create(name, args, group)
    return this.follow(id, options)
  }

  /** The tasks of that name not ended yet whose arguments satisfy `accept`. */
  async unfinished(name, accept) {
    const params = { name, from: 0, size: 100, sort: 'createdAt', order: 'desc' }
    const page = await this.core.api.sendAction('/api/task', { params })
    // Datashare answers a page ({items, pagination}); older versions a plain list.
    const tasks = Array.isArray(page) ? page : page?.items ?? []
    return tasks.filter(t => t.name === name && !FINAL_STATES.has(t.state) && accept(t.args ?? {}))
  }
}

const TASK_ERRORS = {
  ProjectNotVectorized: 'This project has no vectors yet: vectorize it first.',
  DocumentNotVectorized: 'This document has no vectors yet: update the project\'s vectors to include it.',
  ProjectNotGranted: 'You are not allowed to read this project.',
  UnknownProject: 'Datashare has no such project.',
  InvalidProject: 'This project\'s name is not one the workers accept.',
  TaskCancelled: 'The task was cancelled.'
}

/**
 * What went wrong, in words: `{ kind, message }`, `kind` being the task error's
 * name, or for Datashare's HTTP client's errors `unreachable` (no answer), `failed`
 * (5xx), `signed-out` (401), `refused` (another HTTP error); `unexpected` for any
 * other error.
 */
export function describe(error, { refusedWhat = 'the request' } = {}) {
  if (error instanceof TaskFailed) {
    if (error.name === 'InvalidArguments') {
      return { kind: error.name, message: `The workers refused ${refusedWhat}: ${error.message}` }
    }
    const known = TASK_ERRORS[error.name]
    const message = known ?? `The task failed (${error.name}): ${error.message}`
    return { kind: error.name, message }
  }
  if (!error?.isAxiosError) {
    return { kind: 'unexpected', message: `The plugin failed: ${error?.message ?? error}` }
  }
  const status = error.response?.status
  if (!status) {
    return {
      kind: 'unreachable',
      message: 'Datashare\'s task service cannot be reached: check your connection, or ask your administrator whether Datashare is running.'
    }
  }
  if (status >= 500) {
    return {
      kind: 'failed',
      message: `Datashare's task service failed (HTTP ${status}): its workers or their message broker may be down. Try again later, or tell your administrator.`
    }
  }
  if (status === 401) {
    return { kind: 'signed-out', message: 'You are signed out of Datashare: sign in again.' }
  }
  return { kind: 'refused', message: `Datashare refused ${refusedWhat} (HTTP ${status}).` }
}
