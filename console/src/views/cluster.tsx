/**
 * The cluster as the answering node sees it (GET /v1/cluster): its members, how many shards each
 * owns and is assigned, and a map of every shard coloured by the node holding its lease.
 * Refreshed every few seconds.
 */
import { request } from "../api.ts";
import { type ClusterInfo, num } from "../model.ts";
import { useResource } from "../resource.ts";
import { ErrorNote, Time } from "./widgets.tsx";

const REFRESH_MS = 5000;

/** A light background per node (dark text stays readable on every one). */
function nodeColour(index: number): string {
  return `hsl(${(index * 137) % 360} 70% 86%)`;
}

export function ClusterView() {
  const { data: cluster, error } = useResource(() => request<ClusterInfo>("/v1/cluster"), [], REFRESH_MS);

  const nodes = cluster?.nodes ?? [];
  const index = new Map(nodes.map((node, i) => [node.id, i]));
  const moving = cluster?.shards.filter((shard) => !shard.holder).length ?? 0;
  return (
    <>
      <h1>Cluster {cluster?.name ? <span class="muted">{cluster.name}</span> : null}</h1>
      {error && <ErrorNote error={error} title="Could not read the cluster" />}
      {cluster && (
        <>
          <p>
            {nodes.length} node{nodes.length === 1 ? "" : "s"}, {cluster.shardCount} shards
            {moving ? `, ${moving} moving` : ""}. Answered by <code>{cluster.self}</code>.
          </p>
          <section aria-labelledby="nodes-title">
            <h2 id="nodes-title">Nodes</h2>
            <table>
              <thead>
                <tr>
                  <th scope="col">Node</th>
                  <th scope="col">gRPC</th>
                  <th scope="col">Started</th>
                  <th scope="col">Last heartbeat</th>
                  <th scope="col">Resident twins</th>
                  <th scope="col">Shards owned</th>
                  <th scope="col">Shards assigned</th>
                </tr>
              </thead>
              <tbody>
                {nodes.map((node, i) => (
                  <tr key={node.id}>
                    <th scope="row">
                      <span class="swatch" style={{ background: nodeColour(i) }} aria-hidden="true" />
                      {node.id}
                      {node.id === cluster.self ? " (this node)" : ""}
                    </th>
                    <td>{node.grpcAddress || "—"}</td>
                    <td>
                      <Time at={node.startedAt} />
                    </td>
                    <td>
                      <Time at={node.lastHeartbeat} />
                    </td>
                    <td class="number">{num(node.residentTwins)}</td>
                    <td class="number">{node.shardsOwned ?? 0}</td>
                    <td class="number">{node.shardsAssigned ?? 0}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </section>
          <section aria-labelledby="shards-title">
            <h2 id="shards-title">Shard map</h2>
            <p class="muted">
              Each square is a shard, coloured by the node holding its lease; a dashed one is moving (no
              holder).
            </p>
            <ol class="shard-map" aria-label="Shards by holder">
              {cluster.shards.map((shard) => {
                const holder = shard.holder ?? "";
                const i = index.get(holder);
                const label = holder
                  ? `shard ${shard.shard}: held by ${holder} at epoch ${num(shard.epoch)}${
                      shard.assignedTo && shard.assignedTo !== holder
                        ? `, assigned to ${shard.assignedTo}`
                        : ""
                    }`
                  : `shard ${shard.shard}: moving to ${shard.assignedTo ?? "?"}`;
                return (
                  <li
                    key={shard.shard}
                    class={holder ? "shard" : "shard moving"}
                    style={i === undefined ? undefined : { background: nodeColour(i) }}
                    title={label}
                    aria-label={label}
                  >
                    {shard.shard}
                  </li>
                );
              })}
            </ol>
          </section>
        </>
      )}
    </>
  );
}
