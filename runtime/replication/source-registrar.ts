/**
 * The cloud's side of source registration (devices/edge/source-registration.ts): a cloud node
 * answers `doppel.edge.<edge>.register` by adding or repairing that edge's durable source on the
 * cloud's ingress stream (`thin`, edge-stream.ts) or on the cloud's edge logs (`thick`,
 * edge-log.ts), with the cloud's own credentials, so an edge needs no right to the cloud's
 * JetStream API. The edge is the subject's token; the payload only names the edge's stream.
 *
 * Here, beside the cloud's replication, because it serves both kinds: the thin edge's ingress
 * source (devices/edge) and the thick edge's log source (this folder). One node answers each
 * request (queue group). A request whose source is in place is answered from the stream's info at
 * once; updates of a stream's sources are made one at a time at a node (each re-reads the stream
 * first), so two edges' registrations there do not overwrite each other's update (one made at
 * another node at the same moment can: the edge that lost its source asks again next tick and
 * gets it back). A node works on at most {@link MAX_WAITING_REGISTRATIONS} requests at once and
 * answers any beyond with `UNAVAILABLE` (the edge asks again next tick), so an edge publishing on
 * its register subject as fast as it can does not grow a queue without bound.
 */
import { type JetStreamManager, jetstreamManager, type StreamInfo } from "@nats-io/jetstream";
import type { Msg, NatsConnection, Subscription } from "@nats-io/nats-core";
import { DoppelError, FailedPrecondition, Unavailable } from "../core/errors.ts";
import {
  type DurableEdgeSource,
  durableSourceRegistered,
  registerDurableSource,
} from "../devices/edge/durable-source.ts";
import { edgeSourceRegistered, registerEdgeSource } from "../devices/edge/edge-stream.ts";
import { respondOrLog } from "../devices/edge/respond-or-log.ts";
import {
  edgeOfRegistrationSubject,
  parseSourceRegistration,
  type RegistrationReply,
  SOURCE_REGISTRAR_QUEUE,
  SOURCE_REGISTRATION_SUBJECTS,
  type SourcePosition,
  type SourceRegistration,
  sourcePositionOf,
} from "../devices/edge/source-registration.ts";
import { streamInfoIfAny } from "../devices/ingress/stream-config.ts";
import type { Logger } from "../observability/logger.ts";
import { CLOUD_LOGS_STREAM, edgeLogSource } from "./edge-log.ts";

/** How many registration requests a node works on at once; it answers more with `UNAVAILABLE`. */
export const MAX_WAITING_REGISTRATIONS = 64;

export interface SourceRegistrarOptions {
  /** The cloud's ingress stream, which thin edges' forwarding streams are sources of (`DOPPEL_INGRESS`). */
  readonly ingressStream: string;
  readonly logger: Logger;
}

export class SourceRegistrar {
  readonly #nc: NatsConnection;
  readonly #options: SourceRegistrarOptions;
  #jsm!: JetStreamManager;
  /** The JetStream domain of this node's server, if it has one. */
  #domain: string | undefined;
  #sub: Subscription | undefined;
  /** The requests being answered (at most {@link MAX_WAITING_REGISTRATIONS}). */
  readonly #answering = new Set<Promise<void>>();
  /** The last update of a stream's sources: the next waits for it. */
  #updating: Promise<unknown> = Promise.resolve();

  constructor(nc: NatsConnection, options: SourceRegistrarOptions) {
    this.#nc = nc;
    this.#options = options;
  }

  /** Starts answering registrations (on the cloud's own JetStream domain). */
  async start(): Promise<void> {
    this.#jsm = await jetstreamManager(this.#nc);
    this.#domain = (await this.#jsm.getAccountInfo()).domain;
    this.#sub = this.#nc.subscribe(SOURCE_REGISTRATION_SUBJECTS, {
      queue: SOURCE_REGISTRAR_QUEUE,
      callback: (error, message) => {
        // A subscription error (a permission violation, the connection closing) comes with no message.
        if (error) {
          this.#options.logger.warn({ err: error.message }, "edge source registrations: subscription error");
          return;
        }
        if (this.#answering.size >= MAX_WAITING_REGISTRATIONS) {
          this.#respond(message, {
            error: new Unavailable(
              `the cloud node is answering ${MAX_WAITING_REGISTRATIONS} source registrations already: ask again later`,
            ).toWire(),
          });
          return;
        }
        const answering = this.#answer(message)
          .catch((failure: unknown) =>
            this.#options.logger.warn(
              { subject: message.subject, err: String(failure) },
              "edge source registration: answering failed",
            ),
          )
          .finally(() => this.#answering.delete(answering));
        this.#answering.add(answering);
      },
    });
  }

  /** Replies to `message`; a reply that cannot be sent (over the server's `max_payload`) is logged. */
  #respond(message: Msg, reply: RegistrationReply): void {
    respondOrLog(message, reply, this.#options.logger, "edge source registration");
  }

  /** Runs `update` after every update started before it at this node. */
  #serialised<T>(update: () => Promise<T>): Promise<T> {
    const run = this.#updating.then(update);
    this.#updating = run.catch(() => undefined);
    return run;
  }

  async #answer(message: Msg): Promise<void> {
    let reply: RegistrationReply;
    try {
      const edge = edgeOfRegistrationSubject(message.subject);
      reply = { ok: await this.register(edge, parseSourceRegistration(message.data)) };
    } catch (error) {
      const refused = DoppelError.from(error);
      this.#options.logger.warn(
        { subject: message.subject, err: refused.message },
        "edge source registration refused",
      );
      reply = { error: refused.toWire() };
    }
    this.#respond(message, reply);
  }

  /**
   * Adds or repairs `edge`'s durable source for `registration` and returns its position. Fails
   * with `FailedPrecondition` when the cloud stream does not exist yet (no cloud node took device
   * reports, or none replicates edges' logs) or the ingress stream has no subject transform.
   */
  async register(edge: string, registration: SourceRegistration): Promise<SourcePosition> {
    const { logger, ingressStream } = this.#options;
    if (this.#domain === edge)
      throw new FailedPrecondition(
        `a node on edge ${edge}'s own server answered its source registration: a node there must be configured as the edge's (edge.name), the cloud's nodes register edges' sources`,
      );
    if (registration.kind === "thin") {
      const registered = async () => {
        const info = await streamInfoIfAny(this.#jsm, ingressStream);
        return info && edgeSourceRegistered(info.config, edge, registration.stream) ? info : undefined;
      };
      const info = await registered();
      if (info) return position(info, edge, false);
      return this.#serialised(async () => {
        const now = await registered();
        if (now) return position(now, edge, false);
        await registerEdgeSource(this.#jsm, ingressStream, edge, registration.stream);
        logger.info(
          { edge, stream: registration.stream },
          "edge: registered as a source of the cloud's ingress stream",
        );
        return position(await this.#jsm.streams.info(ingressStream), edge, true);
      });
    }
    const source: DurableEdgeSource = { ...edgeLogSource(edge), stream: registration.stream };
    const logs = async () => {
      const info = await streamInfoIfAny(this.#jsm, CLOUD_LOGS_STREAM);
      if (!info)
        throw new FailedPrecondition(
          `the cloud has no JetStream stream ${CLOUD_LOGS_STREAM} yet: no cloud node replicates edges' logs (nats.replicateEdges)`,
        );
      return info;
    };
    const info = await logs();
    if (durableSourceRegistered(info.config, source)) return position(info, edge, false);
    return this.#serialised(async () => {
      const now = await logs();
      if (durableSourceRegistered(now.config, source)) return position(now, edge, false);
      await registerDurableSource(this.#jsm, now.config, source);
      logger.info(
        { edge, stream: registration.stream },
        "edge log: registered as a durable source of the cloud's edge logs",
      );
      return position(await this.#jsm.streams.info(CLOUD_LOGS_STREAM), edge, true);
    });
  }

  /** Stops taking requests and waits for those being answered. */
  async stop(): Promise<void> {
    this.#sub?.unsubscribe();
    await Promise.all(this.#answering);
  }
}

function position(info: StreamInfo, edge: string, changed: boolean): SourcePosition {
  return { changed, ...(sourcePositionOf(info, edge) ?? { seq: 0 }) };
}
