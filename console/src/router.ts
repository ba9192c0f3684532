/**
 * Hash routes, so the node serves one page and the browser's back button works:
 *   #/login · #/cluster · #/twins?type=T&where=W · #/twins/T/ID
 */
import { useEffect, useState } from "preact/hooks";

export type Route =
  | { readonly view: "login" }
  | { readonly view: "cluster" }
  | { readonly view: "browser"; readonly type: string; readonly where: string }
  | { readonly view: "twin"; readonly type: string; readonly id: string };

export function parseRoute(hash: string): Route {
  const [path = "", search = ""] = hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(search);
  if (parts[0] === "login") return { view: "login" };
  if (parts[0] === "twins" && parts.length >= 3) return { view: "twin", type: parts[1]!, id: parts[2]! };
  if (parts[0] === "twins")
    return { view: "browser", type: params.get("type") ?? "", where: params.get("where") ?? "" };
  return { view: "cluster" };
}

export function href(route: Route): string {
  switch (route.view) {
    case "login":
      return "#/login";
    case "cluster":
      return "#/cluster";
    case "browser": {
      const params = new URLSearchParams();
      if (route.type) params.set("type", route.type);
      if (route.where) params.set("where", route.where);
      const search = params.toString();
      return `#/twins${search ? `?${search}` : ""}`;
    }
    case "twin":
      return `#/twins/${encodeURIComponent(route.type)}/${encodeURIComponent(route.id)}`;
  }
}

export function navigate(route: Route): void {
  location.hash = href(route);
}

/** The current route, re-rendering on every hash change. */
export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const update = () => setRoute(parseRoute(location.hash));
    addEventListener("hashchange", update);
    return () => removeEventListener("hashchange", update);
  }, []);
  return route;
}
