/**
 * The twin browser: twins of one type, filtered by an expression in QueryTwins' filter language
 * (GET /v1/twins/{type}?where=&limit=&pageToken=), a page at a time.
 */
import { useState } from "preact/hooks";
import { query, request } from "../api.ts";
import { num, type TwinPage, type TypeInfo } from "../model.ts";
import { useResource } from "../resource.ts";
import { href, navigate } from "../router.ts";
import { ErrorNote, Time } from "./widgets.tsx";

const PAGE_SIZE = 25;

interface Props {
  readonly route: { readonly type: string; readonly where: string };
  readonly types: readonly TypeInfo[];
}

export function TwinBrowser({ route, types }: Props) {
  const type = route.type || types[0]?.name || "";
  const [draftType, setDraftType] = useState(type);
  const [draftWhere, setDraftWhere] = useState(route.where);
  /** Tokens of the pages before the current one ("" is the first page). */
  const [tokens, setTokens] = useState<string[]>([""]);
  const token = tokens[tokens.length - 1] ?? "";
  const { data: page, error } = useResource(
    () =>
      request<TwinPage>(
        `/v1/twins/${encodeURIComponent(type)}${query({ where: route.where, limit: PAGE_SIZE, pageToken: token })}`,
      ),
    [type, route.where, token],
  );

  const submit = (event: Event) => {
    event.preventDefault();
    navigate({ view: "browser", type: draftType, where: draftWhere.trim() });
  };

  const twins = page?.twins ?? [];
  return (
    <>
      <h1>Twins</h1>
      <form class="filter" onSubmit={submit} aria-label="Find twins">
        <div class="field">
          <label for="twin-type">Type</label>
          <select
            id="twin-type"
            value={draftType}
            onChange={(event) => setDraftType((event.target as HTMLSelectElement).value)}
          >
            {types.map((t) => (
              <option key={t.name} value={t.name}>
                {t.name}
              </option>
            ))}
          </select>
        </div>
        <div class="field grow">
          <label for="twin-filter">Filter</label>
          <input
            id="twin-filter"
            type="search"
            spellcheck={false}
            value={draftWhere}
            placeholder="reported.temperature > 25 and state.mode == 'auto'"
            aria-describedby="filter-help"
            aria-invalid={error?.status === 400 ? true : undefined}
            onInput={(event) => setDraftWhere((event.target as HTMLInputElement).value)}
          />
          <small id="filter-help">
            Roots: state, reported, desired, delta, version, id, type. Operators: == != &lt; &lt;= &gt; &gt;=
            in, and, or, not, exists(path), parentheses. Empty: every twin.
          </small>
        </div>
        <button type="submit">Search</button>
      </form>
      {error && <ErrorNote error={error} title="Query refused" />}
      {page && (
        <section aria-labelledby="results-title">
          <h2 id="results-title">
            {twins.length === 0
              ? "No twins match"
              : `Page ${tokens.length}: ${twins.length} twin${twins.length === 1 ? "" : "s"}`}
          </h2>
          {twins.length > 0 && (
            <table>
              <thead>
                <tr>
                  <th scope="col">Id</th>
                  <th scope="col">Version</th>
                  <th scope="col">Updated</th>
                  <th scope="col">Reported</th>
                </tr>
              </thead>
              <tbody>
                {twins.map((twin) => (
                  <tr key={twin.id}>
                    <th scope="row">
                      <a href={href({ view: "twin", type: twin.type || type, id: twin.id })}>{twin.id}</a>
                    </th>
                    <td class="number">{num(twin.version)}</td>
                    <td>
                      <Time at={twin.updatedAt} />
                    </td>
                    <td>
                      <code class="summary">{JSON.stringify(twin.reported ?? {})}</code>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          <nav class="pager" aria-label="Pages">
            <button
              type="button"
              disabled={tokens.length <= 1}
              onClick={() => setTokens(tokens.slice(0, -1))}
            >
              Previous page
            </button>
            <button
              type="button"
              disabled={!page.nextPageToken}
              onClick={() => page.nextPageToken && setTokens([...tokens, page.nextPageToken])}
            >
              Next page
            </button>
          </nav>
        </section>
      )}
    </>
  );
}
