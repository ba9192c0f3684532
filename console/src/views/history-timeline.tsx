/** A twin's latest events as a timeline, newest first (GET /v1/twins/{type}/{id}/history). */
import { query, request, twinPath } from "../api.ts";
import { type HistoryEvent, listOf, num } from "../model.ts";
import { useResource } from "../resource.ts";
import { ErrorNote, Time } from "./widgets.tsx";

const SHOWN = 30;

export function HistoryTimeline({ type, id, version }: { type: string; id: string; version: number }) {
  const { data, error } = useResource(
    () =>
      request(
        `${twinPath(type, id)}/history${query({ from: Math.max(1, version - SHOWN + 1), limit: SHOWN })}`,
      ),
    [type, id, version],
  );
  const events = [...listOf<HistoryEvent>(data, "events")].reverse();

  return (
    <section aria-labelledby="history-title" class="card">
      <h2 id="history-title">History</h2>
      <p class="muted">The latest {SHOWN} events, newest first.</p>
      {error && <ErrorNote error={error} title="Could not read the history" />}
      <ol class="timeline" data-testid="history">
        {events.map((event) => (
          <li key={num(event.version)}>
            <div class="when">
              <span class="version">v{num(event.version)}</span> <Time at={event.at} />
            </div>
            <div class="what">
              <strong>{event.type}</strong>
              {event.principal ? <span class="muted"> by {event.principal}</span> : null}
              <code class="summary">{JSON.stringify(event.data ?? {})}</code>
            </div>
          </li>
        ))}
      </ol>
    </section>
  );
}
