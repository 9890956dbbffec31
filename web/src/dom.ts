// A tiny element builder, and the two updates several views make alike (a text, a percentage
// bar): enough to write views without a framework.

type Child = Node | string | null | undefined | false;

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) if (c) node.append(c);
  return node;
}

/** Sets a node's text only when it differs: an unchanged text costs no DOM mutation. */
export function setText(node: HTMLElement, text: string): void {
  if (node.textContent !== text) node.textContent = text;
}

/** A percentage bar's fill: its width, warm from `warmFrom` %, hot from 90 % (none for no value). */
export function setBar(fill: HTMLElement, pct: number | undefined, warmFrom: number): void {
  const w = pct == null ? 0 : Math.max(0, Math.min(100, pct));
  fill.style.width = `${w}%`;
  fill.classList.toggle('hot', w >= 90);
  fill.classList.toggle('warm', w >= warmFrom && w < 90);
}
