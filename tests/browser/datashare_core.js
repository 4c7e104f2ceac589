/*
 * A contract double of Datashare's frontend core, for the plugin's browser tests.
 *
 * Datashare's frontend (ICIJ/datashare-client) is not published on the npm registry
 * and needs its server, so this page stands in for it, with the real Vue that
 * Datashare shares with its plugins, and only as wide as the plugin uses it. Each
 * part follows datashare-client's source:
 *
 * - start-up (`src/main.js`, `src/core/index.js`, `src/core/Core.js`): the core is
 *   `window.datashare`; once configured (the signed-in user read from
 *   `/api/users/me`) it dispatches `datashare:ready` on `document` with
 *   `detail: { app, core }` (`src/utils/eventBus.js`), and only then creates its
 *   router and mounts its app, so a plugin cannot reach the router at that time;
 * - Vue is shared as `window.__VUE_SHARED__` (`src/utils/shared.js`);
 * - hooks (`src/core/HooksMixin.js`, `src/store/modules/hooks.js`,
 *   `src/store/hooks/HookedComponent.js`, `src/components/Hook/Hook.vue`):
 *   `registerHook({ target, order, name, definition })` ignores a second hook of
 *   the same name; a target renders its hooks by ascending order, each definition
 *   given to `defineComponent` and rendered inside a `<Suspense>` with the target's
 *   `bind` as props. The targets rendered here, as the pages render them:
 *   `search:before` on the search page (`src/views/Search/Search.vue`), which also
 *   holds the document routes; `document.content:before` on a document's page
 *   (`src/components/Document/DocumentContent.vue`); `project-jumbotron:after` with
 *   `bind: { project }` on a project's page
 *   (`src/components/Project/ProjectJumbotron/ProjectJumbotron.vue`);
 * - `core.api.sendAction(url, { method, params, data })` and `core.api.getUser()`
 *   (`src/api/index.js`, `src/api/apiInstance.js`): axios on the page's origin,
 *   answering the response's data (JSON parsed, `''` for an empty body), throwing
 *   axios' error (`isAxiosError`) on a status outside 2xx (`error.response.status`,
 *   `.data`) or without an answer (`error.code` `ERR_NETWORK`, no `response`); the CSRF cookie
 *   `_ds_csrf_token` copied into the `X-DS-CSRF-TOKEN` header (`src/utils/settings.js`),
 *   cookies sent as the browser has them;
 * - `core.router` (`src/router/index.js`, vue-router with `createWebHashHistory`):
 *   `resolve(location).href`, `push(location)`, `currentRoute` (a ref), for the routes
 *   `search` (`/`, query `indices`), `document` (`/d/:index/:id/:routing?`),
 *   `document-standalone` (`/ds/:index/:id/:routing?`) and `project.view`
 *   (`/projects/:name`); `core.route` is the current route;
 * - `core.stores.useSearchStore().indices`: the search page's projects, filled from
 *   the route's `indices` query (`src/store/modules/search.js`,
 *   `src/router/guards/prefillSearchStore.js`).
 */
(() => {
  const Vue = window.Vue
  const { Fragment, Suspense, createApp, defineComponent, h, markRaw, reactive, shallowRef } = Vue
  window.__VUE_SHARED__ = Vue

  const CSRF_COOKIE = '_ds_csrf_token'
  const CSRF_HEADER = 'X-DS-CSRF-TOKEN'

  function cookie(name) {
    const entry = document.cookie.split('; ').find(c => c.startsWith(`${name}=`))
    return entry ? decodeURIComponent(entry.slice(name.length + 1)) : null
  }

  function axiosError(message, code, response) {
    return Object.assign(new Error(message), { name: 'AxiosError', code, response, isAxiosError: true })
  }

  async function sendAction(url, { method = 'GET', params = {}, data, headers = {} } = {}) {
    const target = new URL(url, window.location.origin)
    for (const [key, value] of Object.entries(params)) {
      if (value !== null && value !== undefined) {
        target.searchParams.set(key, value)
      }
    }
    const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json, text/plain, */*', ...headers } }
    if (data !== undefined) {
      init.body = JSON.stringify(data)
      init.headers['Content-Type'] = 'application/json; charset=utf-8'
    }
    const csrf = cookie(CSRF_COOKIE)
    if (csrf) {
      init.headers[CSRF_HEADER] = csrf
    }
    let response
    try {
      response = await fetch(target, init)
    }
    catch {
      throw axiosError('Network Error', 'ERR_NETWORK', undefined)
    }
    const text = await response.text()
    let body = text
    try {
      body = text ? JSON.parse(text) : ''
    }
    catch {
      // axios keeps a body that is not JSON as text
    }
    if (response.status < 200 || response.status > 299) {
      const code = response.status >= 500 ? 'ERR_BAD_RESPONSE' : 'ERR_BAD_REQUEST'
      throw axiosError(`Request failed with status code ${response.status}`, code, { status: response.status, data: body })
    }
    return body
  }

  const ROUTES = {
    'search': '/',
    'document': '/d/:index/:id/:routing?',
    'document-standalone': '/ds/:index/:id/:routing?',
    'project.view': '/projects/:name'
  }

  function parse(fullPath) {
    const [path, search = ''] = fullPath.split('?')
    const query = Object.fromEntries(new URLSearchParams(search))
    for (const [name, pattern] of Object.entries(ROUTES)) {
      const keys = []
      const source = pattern.replace(/\/:(\w+)(\?)?/g, (_, key, optional) => {
        keys.push(key)
        return optional ? '(?:/([^/]+))?' : '/([^/]+)'
      })
      const match = new RegExp(`^${source === '/' ? '/?' : source}$`).exec(path)
      if (match) {
        const params = Object.fromEntries(keys.map((k, i) => [k, match[i + 1] && decodeURIComponent(match[i + 1])]).filter(([, v]) => v))
        return { name, params, query, path, fullPath, href: `#${fullPath}` }
      }
    }
    return { name: 'error', params: {}, query, path, fullPath, href: `#${fullPath}` }
  }

  function resolve(location) {
    if (typeof location === 'string') {
      return parse(location)
    }
    const pattern = ROUTES[location.name] ?? '/'
    const params = location.params ?? {}
    const path = pattern.replace(/\/:(\w+)\??/g, (_, key) => (params[key] ? `/${encodeURIComponent(params[key])}` : '')) || '/'
    const search = new URLSearchParams(location.query ?? {}).toString()
    return parse(search ? `${path}?${search}` : path)
  }

  function hashPath() {
    return window.location.hash.replace(/^#/, '') || '/'
  }

  function createRouter(searchStore) {
    const currentRoute = shallowRef(parse(hashPath()))
    const update = () => {
      currentRoute.value = parse(hashPath())
      const { indices } = currentRoute.value.query
      if (indices !== undefined) {
        searchStore.indices = indices.split(',').filter(Boolean)
      }
    }
    window.addEventListener('hashchange', update)
    update()
    return {
      currentRoute,
      resolve,
      push(location) {
        window.history.pushState(null, '', resolve(location).href)
        update()
        return Promise.resolve()
      }
    }
  }

  // A route's page: the hook targets it renders, with their bound properties.
  function targets(route) {
    if (route.name === 'search') {
      return [['search:before', {}]]
    }
    if (route.name === 'document') {
      return [['search:before', {}], ['document.content:before', {}]]
    }
    if (route.name === 'document-standalone') {
      return [['document.content:before', {}]]
    }
    if (route.name === 'project.view') {
      return [['project-jumbotron:after', { project: { name: route.params.name, label: route.params.name } }]]
    }
    return []
  }

  class Core {
    constructor() {
      this._hooks = reactive([])
      this._searchStore = reactive({
        indices: [],
        get index() {
          return this.indices[0]
        }
      })
      this._api = { sendAction, getUser: () => sendAction('/api/users/me') }
      this._router = undefined
    }

    registerHook({ target, order = 0, name, definition = { template: '<span></span>' } }) {
      if (!name || !this._hooks.some(hook => hook.name === name)) {
        this._hooks.push({ target, order, name, definition: markRaw(definition) })
      }
    }

    get api() {
      return this._api
    }

    get router() {
      return this._router
    }

    get route() {
      return this._router.currentRoute.value
    }

    get stores() {
      return { useSearchStore: () => this._searchStore }
    }

    get core() {
      return this
    }

    _hook(target, bind) {
      const hooks = this._hooks.filter(hook => hook.target === target).sort((a, b) => a.order - b.order)
      if (!hooks.length) {
        return null
      }
      const components = hooks.map((hook, i) => h(defineComponent(hook.definition), { key: i, ...bind }))
      return h('div', { 'key': target, 'class': 'hook', 'data-hook': target }, [h(Suspense, null, { default: () => h(Fragment, null, components) })])
    }

    mount(selector) {
      const core = this
      const Root = defineComponent({
        render() {
          const route = core.route
          const hooks = targets(route).map(([target, bind]) => core._hook(target, bind))
          // A document's page: its title (here its id) above its content's hooks.
          if (route.params.id) {
            hooks.splice(-1, 0, h('h2', { key: 'title', class: 'h5 mt-3' }, route.params.id))
          }
          return h('main', { 'class': 'page', 'data-route': route.name }, hooks)
        }
      })
      createApp(Root).mount(selector)
    }

    async configure() {
      this.user = await this._api.getUser()
      document.dispatchEvent(new CustomEvent('datashare:ready', { detail: { app: this, core: this } }))
      this._router = createRouter(this._searchStore)
      this.mount('#app')
    }
  }

  const core = new Core()
  window.datashare = core
  // As the app's module script, configured after the plugins' deferred scripts ran.
  window.addEventListener('DOMContentLoaded', () => core.configure())
})()
