/**
 * The CLI's client commands: each talks to a running node over gRPC with {@link DoppelClient}
 * and prints readable text, or JSON with `--json` (one document, or one per line for streams).
 */
import { readFileSync } from "node:fs";
import { toMillis } from "../core/duration.ts";
import { InvalidArgument } from "../core/errors.ts";
import { parseRef } from "../core/ids.ts";
import { present } from "../core/present.ts";
import { DoppelClient } from "../grpc/client.ts";
import { integerOption, jsonArgument, timeOption } from "./arguments.ts";
import { compact, formatEvent, formatSample, formatTwin, formatTwinTable, jsonOf, table } from "./format.ts";

export interface ClientFlags {
  readonly server: string;
  readonly json?: boolean;
  readonly timeout?: string;
  /** API key (env DOPPEL_TOKEN). */
  readonly token?: string;
  /** CA file: connect over TLS (env DOPPEL_CA). */
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
}

type Out = (line: string) => void;

function readPem(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new InvalidArgument(`${flag}: cannot read ${path}: ${(error as Error).message}`);
  }
}

function connect(flags: ClientFlags): DoppelClient {
  const timeoutMs = flags.timeout === undefined ? 10_000 : toMillis(flags.timeout as never, "--timeout");
  if (timeoutMs <= 0) throw new InvalidArgument(`--timeout must be above zero, got ${flags.timeout}`);
  return new DoppelClient(flags.server, {
    timeoutMs,
    ...present({
      token: flags.token === "" ? undefined : flags.token,
      ca: flags.ca === undefined ? undefined : readPem(flags.ca, "--ca"),
      cert: flags.cert === undefined ? undefined : readPem(flags.cert, "--cert"),
      key: flags.key === undefined ? undefined : readPem(flags.key, "--key"),
    }),
  });
}

async function using<T>(flags: ClientFlags, run: (client: DoppelClient) => Promise<T>): Promise<T> {
  const client = connect(flags);
  try {
    return await run(client);
  } finally {
    client.close();
  }
}

const json = (value: unknown) => JSON.stringify(value);

export function get(target: string, flags: ClientFlags, out: Out): Promise<void> {
  const ref = parseRef(target);
  return using(flags, async (client) => {
    const view = await client.getTwin(ref);
    out(flags.json ? json(jsonOf.twin(view)) : formatTwin(view));
  });
}

export function query(
  type: string,
  flags: ClientFlags & { where?: string; limit?: string; pageToken?: string; all?: boolean },
  out: Out,
): Promise<void> {
  const limit = integerOption(flags.limit, "--limit");
  return using(flags, async (client) => {
    let pageToken = flags.pageToken;
    let first = true;
    do {
      const page = await client.queryTwins(type, {
        ...present({ where: flags.where, limit, pageToken }),
      });
      if (flags.json) {
        if (flags.all) for (const twin of page.twins) out(json(jsonOf.twin(twin)));
        else out(json({ ...page, twins: page.twins.map(jsonOf.twin) }));
      } else {
        if (page.twins.length > 0 || first)
          out(page.twins.length ? formatTwinTable(page.twins) : "(no twins match)");
        if (page.nextPageToken && !flags.all) out(`more: --page-token ${page.nextPageToken}`);
      }
      first = false;
      pageToken = page.nextPageToken;
    } while (flags.all && pageToken);
  });
}

export function invoke(
  target: string,
  command: string,
  args: string | undefined,
  flags: ClientFlags & { ifVersion?: string },
  out: Out,
): Promise<void> {
  const ref = parseRef(target);
  const body = jsonArgument(args, "JSON_ARGS");
  const expectedVersion = integerOption(flags.ifVersion, "--if-version");
  return using(flags, async (client) => {
    const answer = await client.invoke(ref, command, body, present({ expectedVersion }));
    out(flags.json ? json(answer) : `${JSON.stringify(answer.result, null, 2)}\n(version ${answer.version})`);
  });
}

export function desire(
  target: string,
  patch: string,
  flags: ClientFlags & { ifVersion?: string },
  out: Out,
): Promise<void> {
  const ref = parseRef(target);
  const body = jsonArgument(patch, "JSON_PATCH");
  const expectedVersion = integerOption(flags.ifVersion, "--if-version");
  return using(flags, async (client) => {
    const view = await client.updateDesired(ref, body, present({ expectedVersion }));
    out(
      flags.json
        ? json(jsonOf.twin(view))
        : `desired ${compact(view.desired, 200)}\ndelta   ${compact(view.delta, 200)}\n(version ${view.version})`,
    );
  });
}

export function report(
  target: string,
  patch: string,
  flags: ClientFlags & { messageId?: string },
  out: Out,
): Promise<void> {
  const ref = parseRef(target);
  const body = jsonArgument(patch, "JSON_PATCH");
  return using(flags, async (client) => {
    const ack = await client.reportState(ref, body, present({ messageId: flags.messageId }));
    out(
      flags.json
        ? json(ack)
        : `${ack.duplicate ? "duplicate, not applied" : "applied"} (version ${ack.version})`,
    );
  });
}

export function watch(
  target: string,
  flags: ClientFlags & { skipCurrent?: boolean },
  out: Out,
  signal: AbortSignal,
): Promise<void> {
  const ref = parseRef(target);
  return using(flags, async (client) => {
    const changes = client.watch(ref, flags.skipCurrent ? { skipCurrent: true } : {});
    for await (const change of changes) {
      if (signal.aborted) break;
      if (flags.json) {
        out(json(jsonOf.change(change)));
      } else if (change.events.length === 0) {
        out(formatTwin(change.twin));
      } else {
        for (const event of change.events) out(formatEvent(event));
      }
    }
  });
}

export function history(
  target: string,
  flags: ClientFlags & {
    since?: string;
    until?: string;
    fromVersion?: string;
    toVersion?: string;
    limit?: string;
  },
  out: Out,
): Promise<void> {
  const ref = parseRef(target);
  const range = {
    since: timeOption(flags.since, "--since"),
    until: timeOption(flags.until, "--until"),
    fromVersion: integerOption(flags.fromVersion, "--from-version"),
    toVersion: integerOption(flags.toVersion, "--to-version"),
    limit: integerOption(flags.limit, "--limit"),
  };
  const defined = Object.fromEntries(Object.entries(range).filter(([, v]) => v !== undefined));
  return using(flags, async (client) => {
    for await (const event of client.history(ref, defined))
      out(flags.json ? json(jsonOf.event(event)) : formatEvent(event));
  });
}

export function telemetry(
  target: string,
  flags: ClientFlags & { since?: string; until?: string; interval?: string; limit?: string },
  out: Out,
): Promise<void> {
  const ref = parseRef(target);
  const since = timeOption(flags.since ?? "1h", "--since");
  const until = timeOption(flags.until, "--until");
  const limit = integerOption(flags.limit, "--limit");
  const intervalMs =
    flags.interval === undefined ? undefined : toMillis(flags.interval as never, "--interval");
  return using(flags, async (client) => {
    const query = Object.fromEntries(
      Object.entries({ since, until, limit, intervalMs }).filter(([, v]) => v !== undefined),
    );
    for await (const sample of client.telemetry(ref, query))
      out(flags.json ? json(jsonOf.sample(sample)) : formatSample(sample));
  });
}

export function types(flags: ClientFlags, out: Out): Promise<void> {
  return using(flags, async (client) => {
    const list = await client.listTypes();
    out(
      flags.json
        ? json(list)
        : table(
            ["TYPE", "COMMANDS"],
            list.map((t) => [t.name, t.commands.join(", ")]),
          ),
    );
  });
}

export function health(flags: ClientFlags, out: Out): Promise<void> {
  return using(flags, async (client) => {
    const status = await client.health();
    out(flags.json ? json({ status }) : status);
    if (status !== "SERVING") process.exitCode = 1;
  });
}

export function cluster(flags: ClientFlags & { shards?: boolean }, out: Out): Promise<void> {
  return using(flags, async (client) => {
    const view = await client.cluster();
    if (flags.json) {
      out(json(jsonOf.cluster(view)));
      return;
    }
    const now = Date.now();
    const ago = (ms: number) => (ms > 0 ? `${Math.max(0, Math.round((now - ms) / 100) / 10)}s ago` : "-");
    out(
      `cluster ${view.name || "(single node)"}: ${view.nodes.length} node(s), ${view.shardCount} shards, answered by ${view.self}`,
    );
    const epochs = new Map<string, Set<number>>();
    for (const shard of view.shards) {
      if (!shard.holder) continue;
      const set = epochs.get(shard.holder) ?? new Set<number>();
      set.add(shard.epoch);
      epochs.set(shard.holder, set);
    }
    out(
      table(
        ["NODE", "GRPC", "SHARDS", "ASSIGNED", "TWINS", "HEARTBEAT", "EPOCHS"],
        view.nodes.map((node) => [
          node.id === view.self ? `${node.id} *` : node.id,
          node.grpcAddress || "-",
          String(node.shardsOwned),
          String(node.shardsAssigned),
          String(node.residentTwins),
          ago(node.lastHeartbeat),
          String(epochs.get(node.id)?.size ?? 0),
        ]),
      ),
    );
    const moving = view.shards.filter((s) => s.holder !== s.assignedTo);
    if (moving.length > 0) out(`${moving.length} shard(s) moving: ${moving.map((s) => s.shard).join(", ")}`);
    if (flags.shards) {
      out("");
      out(
        table(
          ["SHARD", "HOLDER", "EPOCH", "ASSIGNED", "EXPIRES"],
          view.shards.map((s) => [
            String(s.shard),
            s.holder || "-",
            String(s.epoch),
            s.assignedTo,
            s.expiresInMs < 0 ? "never" : `${s.expiresInMs} ms`,
          ]),
        ),
      );
    }
  });
}
