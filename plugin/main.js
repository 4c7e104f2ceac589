/*
 * ml-worker's Datashare plugin: semantic search on a project's search page, similar
 * documents on a document's page, and the project's vectors.
 *
 * Datashare injects this file (package.json's `main`) into its page as a deferred
 * classic script, and dispatches `datashare:ready` on `document` once its core is
 * configured, with the core as `detail.core` (datashare-client `src/main.js`,
 * `src/core/Core.js`, `src/utils/eventBus.js`). The plugin registers three hooks on
 * it. A hook's definition is a Vue component (`HookedComponent` gives it to Vue's
 * `defineComponent`, `Hook.vue` renders it with the hook's `bind` as props); Vue is
 * the page's own, shared as `window.__VUE_SHARED__`. Each definition here is only a
 * shell: it renders one element, then hands it to a view of `src/`, which builds
 * its content with DOM calls that take document text as text, never as markup.
 *
 * The views are ES modules loaded next to this file, so the plugin needs no build.
 */
(() => {
  const base = document.currentScript.src
  const views = import(new URL('./src/views.js', base).href)

  // Hook targets of datashare-client: the search page (`views/Search/Search.vue`), a
  // document's text (`components/Document/DocumentContent.vue`), a project's page
  // (`components/Project/ProjectJumbotron/ProjectJumbotron.vue`, bound `{ project }`).
  const HOOKS = [
    { target: 'search:before', name: 'ml-worker-search', view: 'mountSearch' },
    { target: 'document.content:before', name: 'ml-worker-similar', view: 'mountSimilar' },
    { target: 'project-jumbotron:after', name: 'ml-worker-vectors', view: 'mountProjectVectors' }
  ]

  function shell(core, { name, view }) {
    const { h } = window.__VUE_SHARED__
    return {
      name,
      props: { project: { type: Object, default: null } },
      render() {
        return h('div', { class: 'ml-worker-hook' })
      },
      async mounted() {
        const module = await views
        if (this.gone) {
          return
        }
        // The view follows the page through Vue's watchers, which stop with the shell.
        const context = {
          core,
          props: () => this.$props,
          watch: (source, callback) => this.$watch(source, callback, { immediate: true })
        }
        this.view = module[view](this.$el, context)
      },
      beforeUnmount() {
        this.gone = true
        this.view?.destroy()
      }
    }
  }

  document.addEventListener('datashare:ready', ({ detail }) => {
    const { core } = detail
    for (const hook of HOOKS) {
      core.registerHook({ target: hook.target, name: hook.name, definition: shell(core, hook) })
    }
  })
})()
