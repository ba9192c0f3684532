/** Sign in with an API key (`dpk_...`), kept in this tab's sessionStorage only. */
import { useState } from "preact/hooks";
import { type ApiError, request } from "../api.ts";
import { storeKey } from "../session.ts";
import { ErrorNote } from "./widgets.tsx";

export function Login({ open, onSignedIn }: { open: boolean; onSignedIn: () => void }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  if (open)
    return (
      <section aria-labelledby="login-title" class="card narrow">
        <h1 id="login-title">Sign in</h1>
        <p>
          This node runs without API keys (a loopback or demo node): no key is needed.{" "}
          <a href="#/cluster">Open the console</a>.
        </p>
      </section>
    );

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await request("/v1/types", { key: key.trim() });
      storeKey(key.trim());
      onSignedIn();
    } catch (caught) {
      setError(caught as ApiError);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="login-title" class="card narrow">
      <h1 id="login-title">Sign in</h1>
      <p>
        This node asks for an API key. Create one with <code>npx doppel keys create</code> (give it the{" "}
        <code>read</code> scope to look, <code>write</code> and <code>command</code> to change twins,{" "}
        <code>admin</code> for the cluster view). It is kept in this browser tab only.
      </p>
      <form onSubmit={submit}>
        <label for="api-key">API key</label>
        <input
          id="api-key"
          name="api-key"
          type="password"
          autocomplete="off"
          spellcheck={false}
          required
          placeholder="dpk_…"
          value={key}
          onInput={(event) => setKey((event.target as HTMLInputElement).value)}
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? "login-error" : undefined}
        />
        <button type="submit" disabled={busy}>
          Sign in
        </button>
      </form>
      {error && (
        <div id="login-error">
          <ErrorNote error={error} title="Not signed in" />
        </div>
      )}
    </section>
  );
}
