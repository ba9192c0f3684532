/**
 * One twin: its version, state, reported, desired and delta, live over the WebSocket watch; the
 * desired editor (with the version check), command forms, the history timeline and telemetry.
 */
import { useEffect, useState } from "preact/hooks";
import { request } from "../api.ts";
import { num, type TypeDetail } from "../model.ts";
import { href } from "../router.ts";
import { useWatchedTwin } from "../watch.ts";
import { CommandPanel } from "./command-panel.tsx";
import { DesiredEditor } from "./desired-editor.tsx";
import { HistoryTimeline } from "./history-timeline.tsx";
import { TelemetryChart } from "./telemetry-chart.tsx";
import { ErrorNote, JsonBlock, Time } from "./widgets.tsx";

const STATUS_TEXT = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…" } as const;

export function TwinPage({ type, id }: { type: string; id: string }) {
  const { twin, status, error, offer } = useWatchedTwin(type, id);
  const [detail, setDetail] = useState<TypeDetail | null>(null);
  useEffect(() => {
    request<TypeDetail>(`/v1/types/${encodeURIComponent(type)}`).then(setDetail, () => setDetail(null));
  }, [type]);

  const version = num(twin?.version);
  return (
    <>
      <p class="crumbs">
        <a href={href({ view: "browser", type, where: "" })}>{type}</a> / {id}
      </p>
      <h1>
        {type}/{id}
      </h1>
      {error && <ErrorNote error={error} title="Could not read the twin" />}
      <dl class="facts">
        <div>
          <dt>Version</dt>
          <dd data-testid="twin-version">{twin ? version : "—"}</dd>
        </div>
        <div>
          <dt>Updated</dt>
          <dd>
            <Time at={twin?.updatedAt} />
          </dd>
        </div>
        <div>
          <dt>Watch</dt>
          <dd>
            <span role="status" class={`watch ${status}`} data-testid="watch-status">
              {STATUS_TEXT[status]}
            </span>
          </dd>
        </div>
      </dl>
      {twin && (
        <>
          <section aria-labelledby="shadow-title">
            <h2 id="shadow-title">State</h2>
            <div class="grid">
              <JsonBlock id="twin-state" label="State" value={twin.state} />
              <JsonBlock id="twin-reported" label="Reported" value={twin.reported} />
              <JsonBlock id="twin-desired" label="Desired" value={twin.desired} />
              <JsonBlock id="twin-delta" label="Delta (desired not yet reported)" value={twin.delta} />
            </div>
          </section>
          <div class="grid two">
            <DesiredEditor twin={twin} onUpdated={offer} />
            <CommandPanel type={type} id={id} detail={detail} />
          </div>
          <HistoryTimeline type={type} id={id} version={version} />
          <TelemetryChart type={type} id={id} />
        </>
      )}
    </>
  );
}
