// Building the page's elements. Every text from the server (names, addresses, who changed
// what, error messages) goes in as textContent, never as markup: nothing in this app parses
// HTML, so a name like "<script>" is only ever shown.

type Child = Node | string | null | undefined | false;

export interface Props {
  class?: string;
  text?: string;
  /** Attributes set with setAttribute (never style or on* handlers: the CSP forbids both). */
  attrs?: Record<string, string>;
}

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, props: Props = {}, children: Child[] = []): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (props.class) node.className = props.class;
  if (props.text !== undefined) node.textContent = props.text;
  for (const [name, value] of Object.entries(props.attrs ?? {})) node.setAttribute(name, value);
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child);
  }
  return node;
}

/** The element with this id, which index.html holds; a missing one is a build mistake. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) throw new Error(`index.html has no #${id}`);
  return node as T;
}

/** Shows `text` in a message line, as an error or a plain note; an empty text hides it. */
export function say(node: HTMLElement, text: string, kind: 'error' | 'note' = 'note'): void {
  node.textContent = text;
  node.classList.toggle('error', kind === 'error');
  node.hidden = text === '';
}

export function button(label: string, onClick: () => void, attrs: Record<string, string> = {}): HTMLButtonElement {
  const node = el('button', { text: label, attrs: { type: 'button', ...attrs } });
  node.addEventListener('click', onClick);
  return node;
}
