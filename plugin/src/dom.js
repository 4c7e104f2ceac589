/*
 * Building the plugin's elements. Documents are hostile input: their text (titles,
 * paths, passages) and the workers' messages only ever become text nodes, through
 * `textContent` or `createTextNode`, never markup; their control and bidirectional
 * formatting characters are replaced by a visible U+FFFD, and each element holding
 * their text is a bidirectional isolate (`dir="auto"`, CSS `unicode-bidi: isolate`)
 * so right-to-left text cannot reorder what surrounds it.
 */

// C0 and C1 controls (tab, line feed, form feed and carriage return kept: white
// space to CSS), and the bidirectional formatting characters: ALM, LRM, RLM, LRE,
// RLE, PDF, LRO, RLO, LRI, RLI, FSI, PDI.
const UNSAFE = /[\u0000-\u0008\u000B\u000E-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g
const REPLACEMENT = '\uFFFD'

// Short and frequent words that would mark half a passage.
const STOP_WORDS = new Set([
  'and', 'are', 'but', 'for', 'from', 'had', 'has', 'have', 'her', 'his', 'its',
  'not', 'that', 'the', 'their', 'them', 'then', 'there', 'these', 'they', 'this',
  'was', 'were', 'what', 'when', 'which', 'who', 'with', 'you', 'your'
])

/** The text with its control and bidirectional formatting characters made visible. */
export function visible(text) {
  return String(text ?? '').replace(UNSAFE, REPLACEMENT)
}

/**
 * An element: `options.text` becomes its text, `options.attrs` its attributes,
 * `options.on` its event listeners; `children` are elements or strings (text).
 */
export function el(tag, options = {}, children = []) {
  const element = document.createElement(tag)
  const { className, text, attrs = {}, on = {} } = options
  if (className) {
    element.className = className
  }
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined && value !== false) {
      element.setAttribute(name, value === true ? '' : String(value))
    }
  }
  for (const [type, listener] of Object.entries(on)) {
    element.addEventListener(type, listener)
  }
  if (text !== undefined) {
    element.textContent = text
  }
  element.append(...children)
  return element
}

/** An element holding a document's text, isolated and made visible. */
export function docText(tag, className, text) {
  return el(tag, { className: `${className} ml-worker-doc-text`, attrs: { dir: 'auto' }, text: visible(text) })
}

/** The words of a query worth marking in a passage: three letters or more. */
export function queryTerms(query) {
  const words = String(query ?? '').toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []
  return [...new Set(words.filter(w => w.length >= 3 && !STOP_WORDS.has(w)))]
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

/**
 * A document's passage with the words that start with one of `terms` in <mark>
 * elements; the passage's text goes in as text nodes only.
 */
export function highlighted(tag, className, text, terms) {
  const element = docText(tag, className, '')
  const passage = visible(text)
  if (!terms.length) {
    element.textContent = passage
    return element
  }
  const alternatives = terms.map(escapeRegExp).join('|')
  const words = new RegExp(`(?<![\\p{L}\\p{N}])(?:${alternatives})[\\p{L}\\p{N}]*`, 'giu')
  let last = 0
  for (const match of passage.matchAll(words)) {
    element.append(document.createTextNode(passage.slice(last, match.index)))
    element.append(el('mark', { text: match[0] }))
    last = match.index + match[0].length
  }
  element.append(document.createTextNode(passage.slice(last)))
  return element
}

/** A number with a fixed count of decimals, or an empty string when it is none. */
export function decimals(value, digits) {
  return typeof value === 'number' && Number.isFinite(value) ? value.toFixed(digits) : ''
}

/** A link to a route of Datashare's router, opened by the router on a plain click. */
export function routeLink(core, location, className, text) {
  const { href } = core.router.resolve(location)
  // The router's own links: the hash of Datashare's page, or one of its paths.
  const safe = typeof href === 'string' && (href.startsWith('#') || href.startsWith('/'))
  const link = docText('a', className, text)
  if (safe) {
    link.setAttribute('href', href)
  }
  link.addEventListener('click', (event) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
      return
    }
    event.preventDefault()
    core.router.push(location)
  })
  return link
}
