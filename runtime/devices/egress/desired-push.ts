/**
 * Twin → device: after a persisted change that touched desired state, the device is sent
 * `{ version, desired, delta }` on `doppel.dev.<type>.<id>.desired`. Devices that were offline
 * fetch the same with a sync request when they connect. Changes of a thick-edge twin replicated
 * into the cloud's store (written by the edge, core/edge-owner.ts) are not pushed from here: the
 * edge's node pushed them to the device when it made them.
 */
import type { Transport } from "../../../cluster/transport/transport.ts";
import { edgeOwnerOf } from "../../core/edge-owner.ts";
import type { EventRecord } from "../../core/records.ts";
import type { ChangeFeed } from "../../engine/change-feed.ts";
import { BuiltIn } from "../../engine/twin-data.ts";
import { type DesiredPush, DeviceChannel, deviceSubject, encodeJson } from "../protocol.ts";

/** Starts pushing desired-state changes to devices; returns the stop function. */
export function pushDesiredToDevices(feed: ChangeFeed, transport: Transport): () => void {
  return feed.subscribe("*", (change) => {
    if (!changesDesired(change.events)) return;
    if (change.events.some((event) => edgeOwnerOf(event.writer) !== undefined)) return;
    const subject = deviceSubject(change.ref, DeviceChannel.Desired);
    // In-process nobody may be listening (an embedded node without devices): nothing is encoded.
    if (transport.reachesAnyone?.(subject) === false) return;
    const push: DesiredPush = {
      version: change.view.version,
      desired: change.view.desired,
      delta: change.view.delta,
    };
    try {
      transport.publish(subject, encodeJson(push));
    } catch {
      // The transport is closing; the device gets the current desired state when it syncs.
    }
  });
}

/** True when one of `events` is a `$desired` (a loop: this runs for every persisted change). */
function changesDesired(events: readonly EventRecord[]): boolean {
  for (const event of events) if (event.type === BuiltIn.Desired) return true;
  return false;
}
