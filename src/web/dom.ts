/**
 * DOM building without innerHTML: every string becomes a text node or an attribute value, so HTML
 * in answers, questions, titles or snippets is displayed, never parsed or run. Event handlers are
 * functions (`on: {click}`), never attribute strings.
 */
import { CITATION_MARKER, expandMarker } from '../shared/markers.ts';

export type Child = Node | string | number | null | undefined | false;

export interface Attrs {
  /** Attributes set with setAttribute (strings only; `true` sets an empty attribute, false/null skips). */
  [name: string]: string | number | boolean | null | undefined | Record<string, EventListener> | object;
}

const EVENT_ATTRIBUTE = /^on/i;

/**
 * Creates an element. `attrs.on` maps event names to listeners; `attrs.dataset` sets data-*.
 * @throws TypeError for an `on...` attribute given as a string (would be inline script).
 */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === 'on') {
      for (const [ev, fn] of Object.entries(value as Record<string, EventListener>)) el.addEventListener(ev, fn);
      continue;
    }
    if (name === 'dataset') {
      for (const [k, v] of Object.entries(value as Record<string, string>)) el.dataset[k] = v;
      continue;
    }
    if (EVENT_ATTRIBUTE.test(name)) throw new TypeError(`event handler attribute ${name}: pass a function in attrs.on`);
    if (value === false || value === null || value === undefined) continue;
    el.setAttribute(name, value === true ? '' : String(value));
  }
  append(el, ...children);
  return el;
}

/** SVG element (charts). Same rules as `h`. */
export function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number | undefined> = {}, ...children: Child[]): SVGElementTagNameMap[K] {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (EVENT_ATTRIBUTE.test(name)) throw new TypeError(`event handler attribute ${name}`);
    if (value !== undefined) el.setAttribute(name, String(value));
  }
  append(el, ...children);
  return el;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    parent.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
}

/** Replaces all children of `parent`. */
export function replaceChildren(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, ...children);
}

/** The element with `id`, typed. @throws Error when missing (a page/script mismatch). */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`page element #${id} is missing`);
  return el as T;
}

/** A piece of answer text: plain text or a citation marker [n]. */
export type AnswerSegment = { kind: 'text'; text: string } | { kind: 'cite'; n: number };

/**
 * Splits answer text into text and citation segments. A marker becomes citations only when every
 * number in it is a known citation (`known`); otherwise it stays text. "[1, 2]" gives two cite
 * segments. Adjacent text is merged. Pure.
 */
export function splitCitations(text: string, known: ReadonlySet<number>): AnswerSegment[] {
  const out: AnswerSegment[] = [];
  const pushText = (t: string) => {
    if (t === '') return;
    const last = out[out.length - 1];
    if (last?.kind === 'text') last.text += t;
    else out.push({ kind: 'text', text: t });
  };
  let pos = 0;
  for (const m of text.matchAll(CITATION_MARKER)) {
    const numbers = expandMarker(m[1] ?? '');
    // "[1](url)" is a markdown link, not a citation.
    if (!numbers || numbers.length === 0 || !numbers.every((n) => known.has(n)) || text[m.index + m[0].length] === '(') continue;
    pushText(text.slice(pos, m.index));
    for (const n of numbers) out.push({ kind: 'cite', n });
    pos = m.index + m[0].length;
  }
  pushText(text.slice(pos));
  return out;
}
