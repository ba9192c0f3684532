/**
 * Why joining or staying in a cluster fails. Each error has a stable `code`; the node layer maps
 * them onto its own error types (cluster/ never imports runtime/).
 */

/** The cluster was created with another shard count than this node's: joining would misplace every twin. */
export class ShardCountMismatch extends Error {
  readonly code = "SHARD_COUNT_MISMATCH";
  constructor(
    readonly cluster: string,
    readonly clusterShards: number,
    readonly nodeShards: number,
  ) {
    super(`cluster "${cluster}" has ${clusterShards} shards; this node is configured with ${nodeShards}`);
    this.name = "ShardCountMismatch";
  }
}

/** Another live member already uses this node id (two processes with one id would share leases). */
export class NodeIdInUse extends Error {
  readonly code = "NODE_ID_IN_USE";
  constructor(
    readonly cluster: string,
    readonly nodeId: string,
    readonly lastHeartbeatAgeMs: number | undefined,
  ) {
    super(
      `node id "${nodeId}" is already live in cluster "${cluster}"` +
        (lastHeartbeatAgeMs === undefined ? "" : ` (last heartbeat ${lastHeartbeatAgeMs} ms ago)`) +
        ": use another id, or wait until that node is declared dead",
    );
    this.name = "NodeIdInUse";
  }
}

/** A call that the membership's state does not allow (join twice, update before join...). */
export class MembershipStateError extends Error {
  readonly code = "MEMBERSHIP_STATE";
  constructor(message: string) {
    super(message);
    this.name = "MembershipStateError";
  }
}
