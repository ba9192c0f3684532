/**
 * Node configuration: one zod schema for the config file, CLI flags and environment, compiled
 * once at start-up into the options every part reads. Bad configuration is refused with the
 * path of the offending field.
 */

import { z } from "zod";
import { describeIssues } from "../core/config-issues.ts";
import { positiveDurationSchema } from "../core/duration.ts";
import { EDGE_NAME, EDGE_NAME_RULE } from "../core/edge-name.ts";
import { InvalidArgument } from "../core/errors.ts";
import { hostPortProblem, isHostPort } from "../core/host-port.ts";
import { validateType } from "../core/ids.ts";
import { SCOPES } from "../core/principal.ts";
import { cassandraNodeStoreShape } from "../persistence/cassandra/options.ts";
import { keyLimitsSchema } from "../security/api-keys.ts";

/** Every duration of the node's configuration is a timeout, interval or time to live: above zero. */
const duration = positiveDurationSchema;

/** `host:port` or `[IPv6]:port` to listen on (port 0: any free port). */
const listenAddress = z.string().superRefine((text, ctx) => {
  if (!isHostPort(text)) ctx.addIssue({ code: "custom", message: hostPortProblem(text) });
});

const storeSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("memory") }).strict(),
  z
    .object({
      kind: z.literal("sqlite"),
      /** Database file; defaults to `<dataDir>/doppel.db`. */
      path: z.string().min(1).optional(),
      synchronous: z.enum(["full", "normal"]).default("full"),
    })
    .strict(),
  /** Apache Cassandra (see docs/cassandra.md); the store's `shards` come from the node's `shards`. */
  z.object({ kind: z.literal("cassandra"), ...cassandraNodeStoreShape }).strict(),
]);

/** TLS files of a client connection (PEM): the CA to trust (default: the system's) and a client certificate. */
const tlsFilesShape = {
  ca: z.string().min(1).optional(),
  cert: z.string().min(1).optional(),
  key: z.string().min(1).optional(),
};
const pairedCertAndKey = (tls: { cert?: string | undefined; key?: string | undefined }) =>
  (tls.cert === undefined) === (tls.key === undefined);

/** TLS to NATS. */
const natsTlsSchema = z
  .object(tlsFilesShape)
  .strict()
  .refine(pairedCertAndKey, { message: "give both cert and key, or neither" });

/** TLS to Redis; `serverName` when the certificate names another host than the URL. */
const redisTlsSchema = z
  .object({ ...tlsFilesShape, serverName: z.string().min(1).optional() })
  .strict()
  .refine(pairedCertAndKey, { message: "give both cert and key, or neither" });

/** How to authenticate to NATS (one of these, or none). */
const natsCredentialsSchema = z.union([
  z.object({ user: z.string().min(1), pass: z.string() }).strict(),
  z.object({ token: z.string().min(1) }).strict(),
  z.object({ nkeySeed: z.string().min(1) }).strict(),
  z.object({ nkeyFile: z.string().min(1) }).strict(),
  z.object({ credsFile: z.string().min(1) }).strict(),
]);

/**
 * Device credentials through NATS's auth callout (docs/security.md): the node answers the
 * server's authorization requests, letting in each provisioned device with exactly its own
 * subjects. The nodes' own user (`nats.credentials`), `credentials` here and `system` must be the
 * server's `auth_users`.
 */
const deviceAuthSchema = z
  .object({
    /** Seed (`SA...`) of the account nkey that signs device JWTs; its public key is the callout's `issuer`. */
    issuerSeed: z.string().regex(/^SA[A-Z2-7]{56}$/, "must be an account nkey seed (SA...)"),
    /** The account devices are placed in: the one Doppel's node user and stream live in. */
    account: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1-64 letters, digits, '_' or '-'")
      .default("DOPPEL"),
    /** The callout service's own user, in the callout account. */
    credentials: natsCredentialsSchema,
    /** A system-account user, to disconnect a revoked device at once (without: at its JWT's expiry). */
    system: natsCredentialsSchema.optional(),
    /** Hashed device credentials (`doppel devices provision`); default `<dataDir>/device-credentials.json`. */
    credentialsFile: z.string().min(1).optional(),
    /** How long a device's user JWT is valid; it re-authenticates after. */
    jwtTtl: duration.default(3_600_000),
    /** How often the node looks for revocations in the credentials file. */
    revocationPoll: duration.default(1_000),
  })
  .strict();

/**
 * NATS: when set, devices reach the node over NATS (reported state and telemetry durably through
 * the JetStream stream Doppel manages; see runtime/devices/ingress/stream-config.ts for what each setting
 * bounds). When absent, the node uses its in-process transport (the embedded default).
 */
const natsSchema = z
  .object({
    /** Server URL(s), e.g. `nats://127.0.0.1:4222`. */
    servers: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
    credentials: natsCredentialsSchema.optional(),
    /** Device credentials checked by this node as the server's auth callout service (absent: none). */
    deviceAuth: deviceAuthSchema.optional(),
    /** TLS to NATS: PEM files of the CA to trust and a client certificate (when the server verifies clients). */
    tls: natsTlsSchema.optional(),
    /**
     * Apply thick edges' replicated logs (stream `DOPPEL_EDGE_LOGS`) to this node's store, so its
     * queries, history and `WatchTwin` see the edge twins (docs/edge.md). Absent: on for a cloud
     * node, off for an edge node (which may not set it).
     */
    replicateEdges: z.boolean().optional(),
    stream: z
      .object({
        name: z
          .string()
          .regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1-64 letters, digits, '_' or '-'")
          .default("DOPPEL_INGRESS"),
        replicas: z.number().int().min(1).max(5).default(1),
        storage: z.enum(["file", "memory"]).default("file"),
        maxAge: duration.default(7 * 24 * 3_600_000),
        maxBytes: z
          .number()
          .int()
          .min(1024)
          .default(1024 ** 3),
        maxMsgSize: z
          .number()
          .int()
          .min(1024)
          .default(1024 * 1024),
        duplicateWindow: duration.default(2 * 60_000),
      })
      .strict()
      .default({
        name: "DOPPEL_INGRESS",
        replicas: 1,
        storage: "file",
        maxAge: 7 * 24 * 3_600_000,
        maxBytes: 1024 ** 3,
        maxMsgSize: 1024 * 1024,
        duplicateWindow: 2 * 60_000,
      }),
    consumer: z
      .object({
        /** Unacknowledged messages per node before the server stops delivering (backpressure). */
        maxAckPending: z.number().int().min(1).max(100_000).default(1024),
        /** When the server redelivers a message its node neither acknowledged nor refused. */
        ackWait: duration.default(10_000),
        /** Messages of one twin in flight at once (at most 15: a twin remembers 16 message ids). */
        maxInFlightPerTwin: z.number().int().min(1).max(15).default(8),
        /**
         * How long a message waits for its twin once in the twin's window before the node naks it,
         * and those queued behind it (a stuck twin gives its messages back).
         */
        processingDeadline: duration.default(60_000),
      })
      .strict()
      .default({ maxAckPending: 1024, ackWait: 10_000, maxInFlightPerTwin: 8, processingDeadline: 60_000 }),
  })
  .strict();

/** The bound of one class of work (see runtime/core/admission.ts). */
const admissionClass = (maxInFlight: number, maxInFlightPerClient: number) =>
  z
    .object({
      /** Most units of this class in flight on the node at once; beyond: RESOURCE_EXHAUSTED. */
      maxInFlight: z.number().int().min(1).max(1_000_000).default(maxInFlight),
      /** Most units of one client (gRPC connection, device, calling node) in flight at once. */
      maxInFlightPerClient: z.number().int().min(1).max(1_000_000).default(maxInFlightPerClient),
    })
    .strict()
    .default({ maxInFlight, maxInFlightPerClient });

/**
 * Admission control: node-wide bounds on work in flight, per class, checked before work is
 * queued. Over a bound, gRPC answers RESOURCE_EXHAUSTED with `retry-after-ms` in the trailers,
 * devices get a throttle error on `.errors` (a JetStream report is nak'ed with that delay), and a
 * call from another node is refused with RESOURCE_EXHAUSTED.
 */
const admissionSchema = z
  .object({
    grpc: admissionClass(1024, 256),
    device: admissionClass(4096, 16),
    node: admissionClass(2048, 1024),
    /** Open `WatchTwin` streams (each holds up to `watchBufferLimit` changes for a slow client). */
    watch: admissionClass(1024, 64),
  })
  .strict()
  .default({
    grpc: { maxInFlight: 1024, maxInFlightPerClient: 256 },
    device: { maxInFlight: 4096, maxInFlightPerClient: 16 },
    node: { maxInFlight: 2048, maxInFlightPerClient: 1024 },
    watch: { maxInFlight: 1024, maxInFlightPerClient: 64 },
  });

/** A rule of `grpc.tls.clientCertificates`: a client certificate with this CN or SAN is this principal. */
const clientCertificateRuleSchema = z
  .object({
    commonName: z.string().min(1).optional(),
    /** As Node prints it: `DNS:billing.internal`, `URI:spiffe://corp/billing`, `IP Address:10.0.0.7`. */
    san: z.string().min(1).optional(),
    scopes: z.array(z.enum(SCOPES)),
    types: z.array(z.string().min(1)).optional(),
    idPrefixes: z.array(z.string().min(1)).optional(),
    /** `{ ratePerSecond, burst, maxTwins }`, as an API key's limits. */
    limits: keyLimitsSchema.optional(),
  })
  .strict()
  .refine((rule) => rule.commonName !== undefined || rule.san !== undefined, {
    message: "a client certificate rule needs commonName or san",
  });

/** TLS of the gRPC gateway: PEM files. With `clientCa`, clients must present a certificate it signed (mTLS). */
const grpcTlsSchema = z
  .object({
    cert: z.string().min(1),
    key: z.string().min(1),
    clientCa: z.string().min(1).optional(),
    /** Which principal a verified client certificate is (needs clientCa); first match wins. */
    clientCertificates: z.array(clientCertificateRuleSchema).optional(),
  })
  .strict();

/** A token bucket: calls per second sustained, and the burst. */
const rateSchema = z
  .object({
    ratePerSecond: z.number().positive().max(1_000_000),
    burst: z.number().int().min(1).max(10_000_000).optional(),
  })
  .strict();

const clusterSchema = z
  .object({
    /** Cluster name: nodes with the same name and Redis form one cluster. */
    name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1-64 letters, digits, '_' or '-'"),
    /** Redis for membership and shard leases, e.g. `redis://127.0.0.1:6379` (`rediss://`: TLS). */
    redis: z.string().regex(/^rediss?:\/\/\S+$/, "must be a redis:// or rediss:// URL"),
    /** TLS to Redis (PEM files); implies TLS even with a `redis://` URL. */
    redisTls: redisTlsSchema.optional(),
    /** How often a node heartbeats (and reads the members). */
    heartbeat: duration.default(500),
    /** A node silent this long is dead and its shards move (must exceed two heartbeats). */
    deadAfter: duration.default(2000),
    /**
     * Shard lease time to live; a node stops writing a shard before its lease can expire. It
     * bounds failover: a crashed node's shards are taken over at most this long after its last renewal.
     */
    leaseTtl: duration.default(2000),
  })
  .strict();

/** A twin type name (core/ids.ts: a letter, then letters, digits, '_' and '-'). */
const twinType = z.string().superRefine((text, ctx) => {
  try {
    validateType(text);
  } catch (error) {
    ctx.addIssue({ code: "custom", message: (error as Error).message });
  }
});

/**
 * An edge node (docs/edge.md): the node's NATS (`nats.servers`) is a leaf node of the cloud's, with
 * the edge's name as its JetStream domain. Reports and telemetry are stored at the edge (stream
 * `buffer.stream`) and forwarded to the cloud's ingress stream by JetStream sourcing.
 */
const edgeSchema = z
  .object({
    /** The edge's name: its JetStream domain and the token of its status subject. */
    name: z.string().regex(EDGE_NAME, EDGE_NAME_RULE),
    /** The cloud's leaf node URL (`nats://cloud:7422`), for the leaf server's configuration. */
    upstream: z.string().min(1).optional(),
    /** The cloud's JetStream domain. */
    hubDomain: z.string().regex(EDGE_NAME, EDGE_NAME_RULE).default("cloud"),
    /**
     * Not used any more: the cloud node that registers the edge's source puts it on its own
     * ingress stream (`nats.stream.name`). Accepted so that older configuration files still load.
     */
    ingressStream: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1-64 letters, digits, '_' or '-'")
      .default("DOPPEL_INGRESS"),
    /** The outage buffer: the edge stream's limits and what happens when it is full. */
    buffer: z
      .object({
        stream: z
          .string()
          .regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1-64 letters, digits, '_' or '-'")
          .default("DOPPEL_EDGE"),
        maxBytes: z
          .number()
          .int()
          .min(1024)
          .default(1024 ** 3),
        maxAge: duration.default(7 * 24 * 3_600_000),
        /** Full: refuse new reports (`new`, the device's publish fails) or drop the oldest (`old`, counted). */
        discard: z.enum(["new", "old"]).default("new"),
      })
      .strict()
      .default({ stream: "DOPPEL_EDGE", maxBytes: 1024 ** 3, maxAge: 7 * 24 * 3_600_000, discard: "new" }),
    /** Raw telemetry at the edge: kept for `maxAge` (the oldest dropped beyond `maxBytes`), whatever is forwarded. */
    raw: z
      .object({
        stream: z
          .string()
          .regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1-64 letters, digits, '_' or '-'")
          .default("DOPPEL_EDGE_RAW"),
        maxBytes: z
          .number()
          .int()
          .min(1024)
          .default(1024 ** 3),
        maxAge: duration.default(24 * 3_600_000),
      })
      .strict()
      .default({ stream: "DOPPEL_EDGE_RAW", maxBytes: 1024 ** 3, maxAge: 24 * 3_600_000 }),
    /**
     * A thick edge: the twin types that run at this edge, on its own store; their committed events
     * replicate to the cloud (stream `DOPPEL_EDGE_LOG`). Absent: a thin edge (store and forward).
     * Reports of the twin modules' other types are still stored and forwarded (docs/edge.md).
     */
    twins: z
      .array(twinType)
      .min(1, "name at least one twin type")
      .refine((types) => new Set(types).size === types.length, { message: "names a twin type twice" })
      .optional(),
    /** A thick edge's log stream: batches wait here while the link is down (the outage it survives). */
    log: z
      .object({
        maxBytes: z
          .number()
          .int()
          .min(1024)
          .default(1024 ** 3),
        maxAge: duration.default(7 * 24 * 3_600_000),
      })
      .strict()
      .default({ maxBytes: 1024 ** 3, maxAge: 7 * 24 * 3_600_000 }),
    /** How long after a telemetry window's end its samples are still awaited before its aggregates are forwarded. */
    windowGrace: duration.default(5000),
    /** How often the edge reads the cloud's forwarded position, trims what is forwarded, forwards closed telemetry windows and updates its status. */
    tick: duration.default(1000),
  })
  .strict();

/** The configuration a user writes (config file JSON, or built from flags). */
export const nodeConfigSchema = z
  .object({
    /** This node's id in logs, events and the cluster. Default: random. */
    nodeId: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1-64 letters, digits, '_' or '-'")
      .optional(),
    /** Folder for the embedded store and local files. */
    dataDir: z.string().min(1).default(".doppel/data"),
    store: storeSchema.default({ kind: "sqlite", synchronous: "full" }),
    grpc: z
      .object({
        /** `host:port` to serve gRPC on; `false` to serve none. */
        listen: z.union([listenAddress, z.literal(false)]).default("localhost:50051"),
        /** Largest gRPC message accepted, bytes. */
        maxMessageBytes: z
          .number()
          .int()
          .min(1024)
          .max(64 * 1024 * 1024)
          .default(4 * 1024 * 1024),
        /** API keys file (see docs/security.md; `doppel keys create` writes it). */
        apiKeys: z.string().min(1).optional(),
        tls: grpcTlsSchema.optional(),
        /** Token bucket of each caller whose key sets no rate of its own (and of mTLS principals). */
        rateLimit: rateSchema.optional(),
        /**
         * Allow serving a non-loopback address without both API keys (or mTLS) and TLS. Without
         * it, such a node refuses to start.
         */
        insecure: z.boolean().default(false),
      })
      .strict()
      .default({ listen: "localhost:50051", maxMessageBytes: 4 * 1024 * 1024, insecure: false }),
    /**
     * The HTTP listener: the REST API (`/v1`, OpenAPI at `/v1/openapi.json`), WebSocket watch and
     * HTTP device ingress. It uses the gRPC gateway's security: `grpc.apiKeys`, `grpc.tls`,
     * `grpc.rateLimit` and `grpc.insecure` (docs/rest.md).
     */
    http: z
      .object({
        /** `host:port` to serve HTTP on; `false` (the default) to serve none. */
        listen: z.union([listenAddress, z.literal(false)]).default(false),
        /** Largest request body, bytes; larger ones are answered 413. */
        maxBodyBytes: z
          .number()
          .int()
          .min(1024)
          .max(64 * 1024 * 1024)
          .default(1024 * 1024),
        /** Changes a WebSocket watch may hold for a slow client before it is closed (1013). */
        watchBufferLimit: z.number().int().min(1).max(100_000).default(1000),
        /** How long a device's report waits for its durable acknowledgement before 503. */
        deviceAckTimeout: duration.default(5_000),
      })
      .strict()
      .default({ listen: false, maxBodyBytes: 1024 * 1024, watchBufferLimit: 1000, deviceAckTimeout: 5_000 }),
    /** Modules whose exported twin classes this node runs; default: the example twins. */
    twins: z.array(z.string().min(1)).optional(),
    /** Number of shards of the cluster (fixed for a cluster's lifetime). */
    shards: z.number().int().min(1).max(65536).default(256),
    limits: z
      .object({
        /** Largest JSON payload (patch, arguments, event) in bytes. */
        maxPayloadBytes: z
          .number()
          .int()
          .min(256)
          .max(16 * 1024 * 1024)
          .default(64 * 1024),
        /**
         * Each device's token bucket of reports and telemetry messages (one token each); over it a
         * message is dropped and the device told on `.errors` (RESOURCE_EXHAUSTED). Default: none.
         */
        deviceRate: rateSchema.optional(),
        maxJsonDepth: z.number().int().min(2).max(256).default(32),
        /** Most bytes (as JSON) of one twin's reported state; a report that would exceed it is refused. */
        maxReportedBytes: z
          .number()
          .int()
          .min(256)
          .max(64 * 1024 * 1024)
          .default(256 * 1024),
        /** Most bytes of one twin's desired state. */
        maxDesiredBytes: z
          .number()
          .int()
          .min(256)
          .max(64 * 1024 * 1024)
          .default(256 * 1024),
        /** Most bytes of one twin's own state (what its events folded into). */
        maxStateBytes: z
          .number()
          .int()
          .min(256)
          .max(64 * 1024 * 1024)
          .default(1024 * 1024),
        mailboxSize: z.number().int().min(1).default(1000),
        maxPendingEvents: z.number().int().min(1).default(1000),
        maxResident: z.number().int().min(1).default(100_000),
        idleTimeout: duration.default(10 * 60_000),
        idleSweep: duration.default(15_000),
        snapshotEvery: z.number().int().min(1).default(100),
        requestTimeout: duration.default(30_000),
        callTimeout: duration.default(10_000),
        reminderPoll: duration.default(1_000),
        /** How long `Twin.sendToDevice` waits for the device's answer by default. */
        deviceCommandTimeout: duration.default(5_000),
        /** Most device commands one twin keeps queued for an unreachable device (`sendToDevice` `queueFor`). */
        maxQueuedDeviceCommands: z.number().int().min(1).max(10_000).default(100),
      })
      .strict()
      .default({
        maxPayloadBytes: 64 * 1024,
        maxJsonDepth: 32,
        maxReportedBytes: 256 * 1024,
        maxDesiredBytes: 256 * 1024,
        maxStateBytes: 1024 * 1024,
        mailboxSize: 1000,
        maxPendingEvents: 1000,
        maxResident: 100_000,
        idleTimeout: 10 * 60_000,
        idleSweep: 15_000,
        snapshotEvery: 100,
        requestTimeout: 30_000,
        callTimeout: 10_000,
        reminderPoll: 1_000,
        deviceCommandTimeout: 5_000,
        maxQueuedDeviceCommands: 100,
      }),
    admission: admissionSchema,
    nats: natsSchema.optional(),
    /** Run as an edge node (needs `nats`: the edge's leaf server). */
    edge: edgeSchema.optional(),
    /** Join a cluster (needs `nats`: nodes call each other over NATS). */
    cluster: clusterSchema.optional(),
    /** Simulated devices of the example twins, reporting through the node's transport. */
    demo: z
      .object({
        devices: z.number().int().min(0).max(100_000).default(12),
        interval: duration.default(2_000),
      })
      .strict()
      .optional(),
    log: z
      .object({
        level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
      })
      .strict()
      .default({ level: "info" }),
    /**
     * OpenTelemetry tracing. Off by default. When on, trace context is carried in gRPC metadata
     * and NATS headers, and spans are made for rpc, ingress, turn and persist of work that
     * continues a caller's trace (every piece of work, when spans are exported); log lines of
     * traced work carry trace ids. Without an exporter untraced work costs about nothing
     * (`bench:engine`: 0.98× the untraced turn throughput); a span for every turn about half
     * (0.55×). `exporter: "console"` prints finished spans (the CLI: `--traces console`,
     * `DOPPEL_TRACES=console`).
     */
    tracing: z
      .object({ enabled: z.boolean().default(false), exporter: z.enum(["none", "console"]).default("none") })
      .strict()
      .default({ enabled: false, exporter: "none" }),
    /**
     * CoAP (UDP) ingress for constrained devices (see docs/devices.md, *CoAP*). Plaintext: beyond
     * loopback it needs `insecure: true` and every request a device credential.
     */
    coap: z
      .object({
        /** `host:port` to serve CoAP on (UDP; 5683 is CoAP's port). */
        listen: listenAddress,
        /** Allow plaintext CoAP on a non-loopback address (credentials are still required). */
        insecure: z.boolean().default(false),
        /**
         * Refuse requests without a valid device credential. Default: true beyond loopback and on
         * a node that checks device credentials (`nats.deviceAuth`); false on loopback otherwise.
         */
        requireCredentials: z.boolean().optional(),
        /** Most desired-state observations on the node, and per twin (a new one ends the oldest). */
        maxObservers: z.number().int().min(1).max(1_000_000).default(1024),
        maxObserversPerDevice: z.number().int().min(1).max(64).default(2),
        /** How long a report waits for its durable acknowledgement before 5.03. */
        ackTimeout: duration.default(5_000),
      })
      .strict()
      .optional(),
    /** Prometheus metrics endpoint `host:port` (`/metrics`), or false. */
    metrics: z
      .object({
        listen: z.union([listenAddress, z.literal(false)]).default(false),
      })
      .strict()
      .default({ listen: false }),
  })
  .strict()
  .superRefine((config, ctx) => {
    const tls = config.grpc.tls;
    if (tls?.clientCertificates !== undefined && tls.clientCa === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["grpc", "tls", "clientCertificates"],
        message: "client certificate rules need grpc.tls.clientCa (mTLS)",
      });
    }
    if (config.cluster && !config.nats) {
      ctx.addIssue({
        code: "custom",
        path: ["cluster"],
        message: "a cluster needs nats: nodes call each other over NATS",
      });
    }
    if (config.edge && !config.nats) {
      ctx.addIssue({
        code: "custom",
        path: ["edge"],
        message: "an edge node needs nats: the edge's leaf nats-server (--nats)",
      });
    }
    if (config.edge && config.cluster) {
      ctx.addIssue({ code: "custom", path: ["edge"], message: "an edge node runs alone: remove cluster" });
    }
    if (config.edge && config.nats?.replicateEdges) {
      ctx.addIssue({
        code: "custom",
        path: ["nats", "replicateEdges"],
        message: "an edge node does not apply edges' logs (cloud nodes do): remove it",
      });
    }
    if (config.edge?.twins && config.store.kind !== "sqlite") {
      ctx.addIssue({
        code: "custom",
        path: ["store"],
        message: `a thick edge runs its twins on the embedded store: use sqlite, not ${config.store.kind}`,
      });
    }
    if (config.cluster && config.cluster.deadAfter <= 2 * config.cluster.heartbeat) {
      ctx.addIssue({ code: "custom", path: ["cluster", "deadAfter"], message: "must exceed two heartbeats" });
    }
    if (config.cluster && config.store.kind !== "cassandra") {
      ctx.addIssue({
        code: "custom",
        path: ["store"],
        message:
          "a cluster needs a store every node shares: use cassandra (an embedded store is one node's alone)",
      });
    }
  });

export type NodeConfigInput = z.input<typeof nodeConfigSchema>;
export type NodeConfig = z.output<typeof nodeConfigSchema>;

/** Validates a configuration object; `InvalidArgument` names each bad field. */
export function compileConfig(input: unknown, source = "configuration"): NodeConfig {
  const parsed = nodeConfigSchema.safeParse(input ?? {});
  if (!parsed.success) throw new InvalidArgument(`${source}: ${describeIssues(parsed.error, "")}`);
  return parsed.data;
}
