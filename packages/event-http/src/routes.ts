/** Who may call a route: anyone, or only a client that sends the worker's admin token. */
export type RouteAuth = "public" | "admin";

/** The `route` label of `ol_http_requests_total`. */
export type RouteMetric = "run" | "status" | "stats" | "metrics" | "debug" | "registry";

export interface RouteSpec {
  /** The path as docs/http-api.md writes it; `NAME` stands for a lambda name. */
  readonly path: string;
  /** The method it takes; `*` for any. Where `GET` is taken, so is `HEAD`. */
  readonly method: string;
  readonly auth: RouteAuth;
  readonly metric: RouteMetric;
}

/**
 * Every route of the HTTP API and who may call it. The trigger dispatches through this table
 * and checks the token from it, and the tests walk it, so that no route exists without an
 * auth decision. The lambda's environment (its secrets) is in `/registry/NAME/config`: admin.
 */
export const ROUTES = {
  run: { path: "/run/NAME[/path][?query]", method: "*", auth: "public", metric: "run" },
  status: { path: "/status", method: "GET", auth: "public", metric: "status" },
  stats: { path: "/stats", method: "GET", auth: "public", metric: "stats" },
  metrics: { path: "/metrics", method: "GET", auth: "public", metric: "metrics" },
  debug: { path: "/debug", method: "GET", auth: "admin", metric: "debug" },
  registryList: { path: "/registry/", method: "GET", auth: "public", metric: "registry" },
  registryConfig: {
    path: "/registry/NAME/config",
    method: "GET",
    auth: "admin",
    metric: "registry",
  },
  registryUpload: { path: "/registry/NAME", method: "POST", auth: "admin", metric: "registry" },
  registryRemove: { path: "/registry/NAME", method: "DELETE", auth: "admin", metric: "registry" },
  registryPrepare: {
    path: "/registry/NAME/prepare",
    method: "POST",
    auth: "admin",
    metric: "registry",
  },
} as const satisfies Record<string, RouteSpec>;

export type RouteId = keyof typeof ROUTES;

/** A request matched to the table. */
export type RouteMatch =
  /** The route, and the lambda name in its path (`""` where it has none). */
  | { readonly id: RouteId; readonly name: string; readonly metric: RouteMetric }
  /** The path is a route's but the method is not: `allow` lists the methods it takes. */
  | { readonly id: undefined; readonly allow: string; readonly metric: RouteMetric };

interface PathEntry {
  readonly routes: readonly { readonly id: RouteId; readonly method: string }[];
  readonly allow: string;
  readonly metric: RouteMetric;
}

// One entry per path of the table, with its routes and its Allow header, made once.
const BY_PATH = new Map<string, PathEntry>();
for (const [id, spec] of Object.entries(ROUTES) as [RouteId, RouteSpec][]) {
  const entry = BY_PATH.get(spec.path);
  const routes = [...(entry?.routes ?? []), { id, method: spec.method }];
  const allow = routes.flatMap((r) => (r.method === "GET" ? ["GET", "HEAD"] : [r.method]));
  BY_PATH.set(spec.path, { routes, allow: allow.join(", "), metric: spec.metric });
}

/** The table's path for a request path (no query), with the lambda name in it. */
function tablePath(path: string): { readonly path: string; readonly name: string } | undefined {
  if (path === "/run" || path.startsWith("/run/")) {
    const rest = path.slice(5);
    const slash = rest.indexOf("/");
    return { path: ROUTES.run.path, name: slash === -1 ? rest : rest.slice(0, slash) };
  }
  if (path === "/registry") return { path: "/registry/", name: "" };
  if (path.startsWith("/registry/") && path !== "/registry/") {
    const rest = path.slice("/registry/".length);
    const slash = rest.indexOf("/");
    const name = slash === -1 ? rest : rest.slice(0, slash);
    const sub = slash === -1 ? "" : rest.slice(slash);
    if (sub === "" || sub === "/") return { path: "/registry/NAME", name };
    if (sub === "/config" || sub === "/prepare") return { path: `/registry/NAME${sub}`, name };
    return undefined;
  }
  return BY_PATH.has(path) ? { path, name: "" } : undefined;
}

/** Finds the route for a method and a request path (without its query); undefined: none. */
export function matchRoute(method: string, path: string): RouteMatch | undefined {
  const found = tablePath(path);
  if (found === undefined) return undefined;
  const entry = BY_PATH.get(found.path)!;
  const wanted = method === "HEAD" ? "GET" : method;
  for (const route of entry.routes) {
    if (route.method === wanted || route.method === "*") {
      return { id: route.id, name: found.name, metric: entry.metric };
    }
  }
  return { id: undefined, allow: entry.allow, metric: entry.metric };
}
