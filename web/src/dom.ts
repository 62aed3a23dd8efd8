// A few DOM helpers. Nothing here parses HTML: text goes in as text nodes, and attributes
// through setAttribute, so no server string can become markup and the page needs no
// inline script or style (the pod's Content-Security-Policy allows neither).

export type Child = Node | string | number | null | undefined | false | Child[];

type Handler = (ev: any) => void;
export type Attrs = {
  [name: string]: string | number | boolean | null | undefined | Handler;
};

/** Makes an element. `on*` attributes are listeners; `true` sets an empty attribute. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (typeof v === "function") {
        el.addEventListener(k.slice(2).toLowerCase(), v);
      } else if (k === "class") {
        el.className = String(v);
      } else if (k === "value" && "value" in el) {
        (el as HTMLInputElement).value = String(v);
      } else if (k === "checked" && el instanceof HTMLInputElement) {
        el.checked = Boolean(v);
      } else {
        el.setAttribute(k, v === true ? "" : String(v));
      }
    }
  }
  append(el, children);
  return el;
}

export function append(parent: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(parent, c);
    else if (c instanceof Node) parent.appendChild(c);
    else parent.appendChild(document.createTextNode(String(c)));
  }
}

/** Replaces every child of `el`. */
export function replace(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

let nextId = 0;
/** A page-unique id, for label `for` and aria-describedby. */
export function uid(prefix = "id"): string {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/** A labelled form field: the label, then the control. */
export function field(label: string, control: HTMLElement, hint?: string): HTMLElement {
  if (!control.id) control.id = uid("f");
  const parts: Child[] = [h("label", { for: control.id }, label), control];
  if (hint) {
    const hintId = uid("hint");
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("small", { id: hintId, class: "hint" }, hint));
  }
  return h("div", { class: "field" }, ...parts);
}

/** A checkbox with its label after it. */
export function checkbox(label: string, input: HTMLInputElement): HTMLElement {
  if (!input.id) input.id = uid("f");
  input.type = "checkbox";
  return h("div", { class: "field field-check" }, input, h("label", { for: input.id }, label));
}

/** Keeps `fn` from running more than once per `ms`; the last call always runs. */
export function throttle<A extends unknown[]>(ms: number, fn: (...a: A) => void): (...a: A) => void {
  let last = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let pending: A | undefined;
  return (...a: A) => {
    pending = a;
    const now = Date.now();
    const wait = last + ms - now;
    if (wait <= 0) {
      last = now;
      fn(...a);
      pending = undefined;
    } else if (!timer) {
      timer = setTimeout(() => {
        timer = undefined;
        last = Date.now();
        if (pending) fn(...pending);
        pending = undefined;
      }, wait);
    }
  };
}

let toastTimer: ReturnType<typeof setTimeout> | undefined;
/** Shows a short notice (an error the page has no better place for), and says it at once. */
export function announce(text: string): void {
  const toast = document.getElementById("toast");
  if (!toast) return;
  clearTimeout(toastTimer);
  toast.textContent = text;
  toastTimer = setTimeout(() => (toast.textContent = ""), 6000);
}

export function formatTime(ms: number): string {
  if (!ms) return "";
  const d = new Date(ms);
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return d.toDateString() === new Date().toDateString()
    ? time
    : `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}
