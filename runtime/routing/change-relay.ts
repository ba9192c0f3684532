/**
 * Publishes every persisted change of the twins this node runs on the twin's change subject, so a
 * `WatchTwin` on any node sees it. NATS drops messages nobody subscribed to, so unwatched twins
 * cost one publish per persisted batch.
 */
import type { Transport } from "../../cluster/transport/transport.ts";
import type { ChangeFeed } from "../engine/change-feed.ts";
import { changeSubject } from "./protocol.ts";

const encoder = new TextEncoder();

/** Starts relaying; returns the stop function. */
export function relayChanges(feed: ChangeFeed, transport: Transport): () => void {
  return feed.subscribe("*", (change) => {
    try {
      transport.publish(changeSubject(change.ref), encoder.encode(JSON.stringify(change)));
    } catch {
      // The transport is closing; watchers re-watch and take the current state.
    }
  });
}
