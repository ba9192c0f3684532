/**
 * The cloud's side of the leaf link, locked per edge (docs/edge.md "The hub's configuration",
 * docs/security.md): one user per edge in the hub's top-level `authorization { users }`, allowed
 * only as a leaf connection (`allowed_connection_types: ["LEAFNODE"]`), with the least permissions
 * a thin or thick edge needs. (`leafnodes.authorization.users` entries take no permissions, hence
 * top-level users and a `leafnodes` block without an `authorization` of its own.)
 *
 * On a leaf connection nats-server applies the user's permissions as seen from the hub, not
 * inverted (nats-server v2.15.3, tested with real servers in hub-lock.test.ts): `publish` is what
 * the edge may send into the cloud, `subscribe` what the cloud delivers to the edge (a leaf
 * subscription outside it is not propagated). `allow_responses` is not applied to leaf
 * connections, so the reply subjects are listed.
 *
 * What an edge `E` may send into the cloud (`publish`):
 * - `doppel.edge-source.E` and `doppel.edge-source.E.>`: its streams' source consumers deliver
 *   there to the hub's sources (thin forwarding stream, thick log);
 * - `doppel.edge.E.>`: its own requests, above all the registration of its sources
 *   (`doppel.edge.E.register`, source-registration.ts: the cloud edits its streams, not the edge);
 * - `doppel.dev.*.*.sync`, `doppel.dev.*.*.cmd-result`: its devices' desired-state requests and
 *   command results;
 * - `_INBOX.>`: answers to the cloud's requests (routed commands, status, device commands), and
 *   `$JSC.R.>`: its JetStream's answers to the hub's source requests.
 *
 * What the cloud delivers to it (`subscribe`):
 * - `$JS.E.API.>`: the hub's requests to its JetStream (the sources' consumer resets);
 * - `$JS.FC.<its streams>.DOPPEL_CLOUD_SOURCE.*`: the hub's flow-control answers to its source
 *   consumers;
 * - `doppel.edge.E.>`: commands routed down (`doppel.edge.E.rpc`), status requests, and the answers
 *   to its own requests (the edge node's inbox is `doppel.edge.E.inbox`: edge-subjects.ts' `edgeInboxPrefix`);
 * - `doppel.dev.*.*.desired`, `doppel.dev.*.*.cmd`, `doppel.dev.*.*.errors` and the device
 *   connections' inboxes `_INBOX.doppel.*.*.>`: desired pushes, commands, errors and sync answers
 *   for its devices.
 *
 * Nothing of `$JS.<cloud>.API`, nor another edge's `doppel.edge.<other>.>`,
 * `doppel.edge-source.<other>` or `doppel.edge-log.<other>.>`. Device subjects carry no edge, so
 * the device grants are every device's: an edge's credentials can receive the desired pushes and
 * commands of devices elsewhere (docs/security.md, "What the hub's edge users do not isolate").
 */
import { checkEdgeName } from "../../core/edge-name.ts";
import { InvalidArgument } from "../../core/errors.ts";
import { DEVICE_PREFIX, DeviceChannel } from "../protocol.ts";
import { domainApi, EDGE_SOURCE_CONSUMER } from "./durable-source.ts";
import { DEFAULT_EDGE_STREAM } from "./edge-stream.ts";

/** One edge's user at the hub. */
export interface HubEdgeUser {
  /** The edge's name: its JetStream domain and subject token. */
  readonly edge: string;
  /** The leaf credentials the edge's leaf server connects with (`doppel edge leaf-config --upstream`). */
  readonly user: string;
  readonly password: string;
  /** The edge's streams the hub sources (default `DOPPEL_EDGE` and `DOPPEL_EDGE_LOG`). */
  readonly streams?: readonly string[];
}

/** The edge's thick log stream (replication/edge-log.ts's `EDGE_LOG_STREAM`; named here, the layer below). */
const EDGE_LOG_STREAM = "DOPPEL_EDGE_LOG";

/** The permissions of edge `edge`'s hub user (see the module comment). */
export function hubEdgePermissions(
  edge: string,
  streams: readonly string[] = [DEFAULT_EDGE_STREAM.name, EDGE_LOG_STREAM],
): { publish: string[]; subscribe: string[] } {
  checkEdgeName(edge);
  const device = (channel: DeviceChannel) => `${DEVICE_PREFIX}.*.*.${channel}`;
  return {
    publish: [
      `doppel.edge-source.${edge}`,
      `doppel.edge-source.${edge}.>`,
      `doppel.edge.${edge}.>`,
      device(DeviceChannel.Sync),
      device(DeviceChannel.CommandResult),
      "_INBOX.>",
      "$JSC.R.>",
    ],
    subscribe: [
      `${domainApi(edge)}.>`,
      ...streams.map((stream) => `$JS.FC.${stream}.${EDGE_SOURCE_CONSUMER}.*`),
      `doppel.edge.${edge}.>`,
      device(DeviceChannel.Desired),
      device(DeviceChannel.Command),
      device(DeviceChannel.Errors),
      "_INBOX.doppel.*.*.>",
    ],
  };
}

const quote = (text: string) => JSON.stringify(text);
const list = (subjects: readonly string[]) => `[${subjects.map(quote).join(", ")}]`;

/** The hub's `authorization.users` entries of `edges`, one per line. */
export function hubEdgeUsers(edges: readonly HubEdgeUser[]): string[] {
  const seen = new Set<string>();
  return edges.map((e) => {
    if (seen.has(e.user))
      throw new InvalidArgument(`the hub user ${JSON.stringify(e.user)} is given to two edges`, {
        field: "user",
      });
    seen.add(e.user);
    if (e.password.length === 0)
      throw new InvalidArgument(`edge ${e.edge} has an empty password`, { field: "password" });
    const { publish, subscribe } = hubEdgePermissions(e.edge, e.streams);
    return (
      `{ user: ${quote(e.user)}, password: ${quote(e.password)}, allowed_connection_types: ["LEAFNODE"], ` +
      `permissions: { publish: { allow: ${list(publish)} }, subscribe: { allow: ${list(subscribe)} } } }`
    );
  });
}

/**
 * The hub's `authorization` block for `edges` plus `others` (the cloud's own users, entries in
 * nats-server syntax), and a note that the `leafnodes` block keeps no `authorization` of its own.
 */
export function hubAuthorizationConfig(
  edges: readonly HubEdgeUser[],
  others: readonly string[] = [],
): string {
  return [
    "# The Doppel edges' leaf users (written by doppel edge hub-config). The hub's leafnodes block",
    "# must have no authorization of its own: these users are the leaf credentials.",
    "authorization {",
    "  users: [",
    ...[...others, ...hubEdgeUsers(edges)].map((entry) => `    ${entry}`),
    "  ]",
    "}",
    "",
  ].join("\n");
}
