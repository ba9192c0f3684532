/**
 * Edits a twin's desired state with a JSON merge patch (null deletes a key), sent with
 * `If-Match: "<version>"`: the version the operator started from. When the twin moved on
 * meanwhile the node refuses it (VERSION_CONFLICT) and the editor says so, keeping the edit.
 */
import { useState } from "preact/hooks";
import { ApiError, type JsonObject, request, twinPath } from "../api.ts";
import { num, type Twin } from "../model.ts";
import { ErrorNote } from "./widgets.tsx";

interface Props {
  readonly twin: Twin;
  readonly onUpdated: (twin: Twin) => void;
}

export function DesiredEditor({ twin, onUpdated }: Props) {
  /** The version the edit is based on; null while not editing. */
  const [base, setBase] = useState<number | null>(null);
  const [text, setText] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const [conflict, setConflict] = useState<ApiError | null>(null);
  const [failure, setFailure] = useState<ApiError | null>(null);
  const [saved, setSaved] = useState<number | null>(null);
  const version = num(twin.version);

  const start = () => {
    setBase(version);
    setText(JSON.stringify(twin.desired ?? {}, null, 2));
    setProblem(null);
    setConflict(null);
    setFailure(null);
    setSaved(null);
  };

  const submit = async (event: Event) => {
    event.preventDefault();
    if (base === null) return;
    let patch: JsonObject;
    try {
      const parsed = JSON.parse(text) as unknown;
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))
        throw new Error("the patch must be a JSON object");
      patch = parsed as JsonObject;
    } catch (caught) {
      setProblem(`Not a JSON object: ${(caught as Error).message}`);
      return;
    }
    setProblem(null);
    setConflict(null);
    setFailure(null);
    try {
      const updated = await request<Twin>(`${twinPath(twin.type, twin.id)}/desired`, {
        method: "PUT",
        body: patch,
        headers: { "if-match": `"${base}"` },
      });
      onUpdated(updated);
      setSaved(num(updated.version));
      setBase(null);
    } catch (caught) {
      if (caught instanceof ApiError && caught.isVersionConflict) setConflict(caught);
      else setFailure(caught as ApiError);
    }
  };

  return (
    <section aria-labelledby="desired-title" class="card">
      <h2 id="desired-title">Change desired</h2>
      {base === null ? (
        <>
          {saved !== null && (
            <p role="status" class="ok">
              Desired updated: the twin is now at version {saved}.
            </p>
          )}
          <button type="button" onClick={start}>
            Edit desired
          </button>
        </>
      ) : (
        <form onSubmit={submit}>
          <label for="desired-patch">Merge patch for desired (null deletes a key)</label>
          <textarea
            id="desired-patch"
            rows={6}
            spellcheck={false}
            value={text}
            aria-describedby="desired-base"
            aria-invalid={problem ? true : undefined}
            onInput={(event) => setText((event.target as HTMLTextAreaElement).value)}
          />
          <p id="desired-base" class="muted">
            Based on version {base}
            {version > base ? ` (the twin has changed since: it is now at version ${version})` : ""}; applied
            only if the twin is still at that version.
          </p>
          {problem && (
            <p class="error" role="alert">
              {problem}
            </p>
          )}
          {conflict && (
            <div class="error" role="alert" data-testid="desired-conflict">
              <p>
                <strong>Version conflict:</strong> your edit was based on version {base}, but the twin has
                moved on to version {version}; nothing was changed. Check the current desired state, then
                apply your edit again on the new version.
              </p>
              <p class="code">{conflict.message}</p>
              <button
                type="button"
                onClick={() => {
                  setBase(version);
                  setConflict(null);
                }}
              >
                Base my edit on version {version}
              </button>
            </div>
          )}
          {failure && <ErrorNote error={failure} title="Desired not changed" />}
          <div class="actions">
            <button type="submit">Apply</button>
            <button type="button" class="secondary" onClick={() => setBase(null)}>
              Cancel
            </button>
          </div>
        </form>
      )}
    </section>
  );
}
