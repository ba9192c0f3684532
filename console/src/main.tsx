/** The console's entry: finds out whether the node wants a key, then shows the routed view. */
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError, request } from "./api.ts";
import type { TypeInfo } from "./model.ts";
import { listOf } from "./model.ts";
import { href, navigate, type Route, useRoute } from "./router.ts";
import { forgetKey, storedKey } from "./session.ts";
import "./style.css";
import { ClusterView } from "./views/cluster.tsx";
import { Login } from "./views/login.tsx";
import { TwinBrowser } from "./views/twin-browser.tsx";
import { TwinPage } from "./views/twin-page.tsx";
import { ErrorNote } from "./views/widgets.tsx";

/** Whether the node asked for a key: "open" nodes (loopback demo) need none. */
type Access =
  | { readonly state: "checking" }
  | { readonly state: "signed-in"; readonly open: boolean; readonly types: readonly TypeInfo[] }
  | { readonly state: "signed-out" }
  | { readonly state: "failed"; readonly error: ApiError };

function App() {
  const route = useRoute();
  const [access, setAccess] = useState<Access>({ state: "checking" });

  const probe = async () => {
    const key = storedKey();
    try {
      const types = listOf<TypeInfo>(await request("/v1/types", { key }), "types");
      setAccess({ state: "signed-in", open: !key, types });
    } catch (error) {
      if (error instanceof ApiError && error.isUnauthenticated) {
        forgetKey();
        setAccess({ state: "signed-out" });
      } else setAccess({ state: "failed", error: error as ApiError });
    }
  };
  useEffect(() => {
    void probe();
  }, []);

  const signOut = () => {
    forgetKey();
    setAccess({ state: "signed-out" });
    navigate({ view: "login" });
  };

  if (access.state === "checking")
    return (
      <Shell route={route}>
        <p role="status">Connecting to the node…</p>
      </Shell>
    );
  if (access.state === "failed")
    return (
      <Shell route={route}>
        <h1>Cannot reach the node</h1>
        <ErrorNote error={access.error} />
      </Shell>
    );
  if (access.state === "signed-out" || route.view === "login")
    return (
      <Shell route={route}>
        <Login
          open={access.state === "signed-in" && access.open}
          onSignedIn={async () => {
            await probe();
            navigate({ view: "cluster" });
          }}
        />
      </Shell>
    );
  return (
    <Shell route={route} signedIn={{ open: access.open, signOut }}>
      <Routed route={route} types={access.types} />
    </Shell>
  );
}

function Routed({ route, types }: { route: Route; types: readonly TypeInfo[] }) {
  switch (route.view) {
    case "browser":
      return <TwinBrowser key={`${route.type}?${route.where}`} route={route} types={types} />;
    case "twin":
      return <TwinPage key={`${route.type}/${route.id}`} type={route.type} id={route.id} />;
    default:
      return <ClusterView />;
  }
}

interface ShellProps {
  readonly route: Route;
  readonly signedIn?: { readonly open: boolean; readonly signOut: () => void };
  readonly children: preact.ComponentChildren;
}

/** Landmarks: a skip link, the banner with the navigation, the main region. */
function Shell({ route, signedIn, children }: ShellProps) {
  const current = (view: Route["view"]) =>
    route.view === view || (view === "browser" && route.view === "twin") ? "page" : undefined;
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="banner">
        <span class="brand">Doppel</span>
        {signedIn && (
          <nav aria-label="Console">
            <a href={href({ view: "cluster" })} aria-current={current("cluster")}>
              Cluster
            </a>
            <a href={href({ view: "browser", type: "", where: "" })} aria-current={current("browser")}>
              Twins
            </a>
          </nav>
        )}
        {signedIn && (
          <div class="session">
            {signedIn.open ? (
              <span>No key needed (open node)</span>
            ) : (
              <button type="button" onClick={signedIn.signOut}>
                Sign out
              </button>
            )}
          </div>
        )}
      </header>
      <main id="main" tabIndex={-1}>
        {children}
      </main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
