// Hash routes, so that the pod serves every page as `/`:
//   #/signin   #/lobby   #/room/<id>[?t=<tournament>]   #/tournament/<id>
export interface Page {
  title: string;
  /** Called when the page is left; `next` is the hash being opened. */
  destroy(next: string): void;
}

export interface Route {
  name: "signin" | "lobby" | "room" | "tournament";
  id: string;
  params: URLSearchParams;
}

export function parse(hash: string): Route {
  const raw = hash.replace(/^#\/?/, "");
  const [path = "", query = ""] = raw.split("?");
  const params = new URLSearchParams(query);
  const [head = "", ...rest] = path.split("/");
  const id = decodeURIComponent(rest.join("/"));
  if (head === "room" && id) return { name: "room", id, params };
  if (head === "tournament" && id) return { name: "tournament", id, params };
  if (head === "signin") return { name: "signin", id: "", params };
  return { name: "lobby", id: "", params };
}

/** Opens `hash`; the same hash again re-renders it. */
export function navigate(hash: string): void {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = hash;
}
