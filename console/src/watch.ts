/**
 * A twin, kept current: GET /v1/twins/{type}/{id}, then the WebSocket watch
 * (/v1/twins/{type}/{id}/watch), whose first message is the current state and every later one a
 * persisted change (versions strictly increase; an older or equal version is ignored). A dropped
 * socket reconnects after a pause and starts again from the current state.
 */
import { useEffect, useState } from "preact/hooks";
import { type ApiError, request, twinPath } from "./api.ts";
import { num, type Twin, type TwinChange } from "./model.ts";
import { storedKey } from "./session.ts";

const RECONNECT_MS = 3000;

export type WatchStatus = "connecting" | "live" | "reconnecting";

export interface WatchedTwin {
  readonly twin: Twin | null;
  readonly status: WatchStatus;
  readonly error: ApiError | null;
  /** Replaces the twin with a newer copy (e.g. the answer to a write), if it is newer. */
  readonly offer: (twin: Twin) => void;
}

/** The watch socket's URL; the key goes in the query (browsers cannot set headers on a WebSocket). */
function watchUrl(type: string, id: string): string {
  const url = new URL(`${twinPath(type, id)}/watch`, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const key = storedKey();
  if (key) url.searchParams.set("access_token", key);
  return url.toString();
}

export function useWatchedTwin(type: string, id: string): WatchedTwin {
  const [twin, setTwin] = useState<Twin | null>(null);
  const [status, setStatus] = useState<WatchStatus>("connecting");
  const [error, setError] = useState<ApiError | null>(null);
  const offer = (next: Twin) =>
    setTwin((current) => (current && num(current.version) >= num(next.version) ? current : next));

  useEffect(() => {
    let socket: WebSocket | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let stopped = false;
    request<Twin>(twinPath(type, id)).then(offer, (caught: ApiError) => setError(caught));
    const connect = () => {
      socket = new WebSocket(watchUrl(type, id));
      // Live from the first message (the current state): every change after it is delivered.
      socket.onmessage = (message) => {
        const change = JSON.parse(String(message.data)) as TwinChange;
        if (change.twin) {
          offer(change.twin);
          setError(null);
        }
        setStatus("live");
      };
      socket.onclose = () => {
        if (stopped) return;
        setStatus("reconnecting");
        timer = setTimeout(connect, RECONNECT_MS);
      };
    };
    connect();
    return () => {
      stopped = true;
      clearTimeout(timer);
      socket?.close();
    };
  }, [type, id]);

  return { twin, status, error, offer };
}
