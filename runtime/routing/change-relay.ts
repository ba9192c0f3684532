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
      // Field by field: a change may be a commit, with more fields and its view behind a getter.
      const message = { ref: change.ref, events: change.events, view: change.view };
      transport.publish(changeSubject(change.ref), encoder.encode(JSON.stringify(message)));
    } catch {
      // The transport is closing; watchers re-watch and take the current state.
    }
  });
}
