/**
 * Why this node may not write a shard now. The runtime maps {@link LeaseLost} to `Unavailable`
 * (cluster/ never imports runtime/): the caller should retry, and will be routed to the new owner.
 */

/**
 * Why a shard was lost: `released` (handed over, or released on close), `renew-rejected` (the
 * store no longer had the lease), `taken` (the store no longer had it and another node holds it),
 * `expired` (the local deadline passed without a successful renew: store unreachable or process
 * paused), `closed` (closed without releasing).
 */
export type LossReason = "released" | "renew-rejected" | "taken" | "expired" | "closed";

/** Why {@link LeaseLost} was thrown: never owned (or not yet), or how it was last lost. */
export type LeaseLostReason = "not-owned" | LossReason;

const EXPLANATIONS: Record<LeaseLostReason, string> = {
  "not-owned": "this node does not own it",
  released: "this node released it",
  "renew-rejected": "its lease was gone from the store at renewal",
  taken: "another node holds it now",
  expired: "its lease expired on this node (not renewed in time)",
  closed: "shard leases are closed on this node",
};

/** This node does not hold a valid lease on `shard`: it must not write it. */
export class LeaseLost extends Error {
  readonly code = "LEASE_LOST";
  constructor(
    readonly shard: number,
    readonly reason: LeaseLostReason,
  ) {
    super(`shard ${shard} is not writable here: ${EXPLANATIONS[reason]}`);
    this.name = "LeaseLost";
  }
}
