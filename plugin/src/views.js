/*
 * The plugin's views, each mounted by a hook's shell (`main.js`) on the element it
 * renders, with `{ core, watch, props }`: Datashare's core, a watcher of the page's
 * reactive state, and the hook's bound properties.
 */
import { el } from './dom.js'
import { Tasks } from './tasks.js'
import { VectorsPanel } from './vectors.js'

export { mountSearch } from './search.js'
export { mountSimilar } from './similar.js'

/** A project's vectors on its page (bound `{ project }`). */
export function mountProjectVectors(root, { core, watch, props }) {
  const vectors = new VectorsPanel(core, new Tasks(core))
  root.append(el('section', { className: 'ml-worker ml-worker-project-vectors' }, [
    el('h3', { className: 'ml-worker-title', text: 'Vectors for semantic search' }),
    vectors.element
  ]))
  watch(() => props().project?.name ?? '', name => vectors.show(name))
  return { destroy: () => vectors.destroy() }
}
