/**
 * CoAP ingress (RFC 7252 over UDP, Observe RFC 7641) for constrained devices, on the node's device
 * transport: a report or telemetry message goes the same durable way a NATS device's does
 * (`Transport.publishDurable` on the device's subject: into the JetStream ingress stream on NATS,
 * processed and persisted in-process), and a confirmable request is answered 2.04 Changed (reported)
 * or 2.01 Created (telemetry) only once that publish is acknowledged. Until then the client sees
 * at most the empty ACK of a separate response (RFC 7252 §5.2.2), never a success code.
 *
 * Before anything is published a request is checked as NATS ingress would check it, and refused
 * with a CoAP code and a diagnostic payload (`CODE: message`): the path and twin id (4.04 / 4.00),
 * the device's credential (4.01 / 4.03), the payload's size (4.13), Content-Format (4.15), JSON or
 * CBOR decoding, the report stamp and the twin type's reported schema (4.00), admission control
 * (5.03 with Max-Age). Raw datagrams are screened first (`screenDatagram`), so a malformed one is
 * answered or dropped without reaching the CoAP library (node-coap).
 *
 * The CoAP library: node-coap (`coap`), the maintained CoAP implementation for Node.js (server,
 * client, Observe, deduplication of retransmitted confirmable requests, separate responses); it
 * has no DTLS, so the device's credential travels as the `token` query parameter (see
 * docs/security.md for what that means).
 */
import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { isIPv6 } from "node:net";
import coap from "coap";
import { FailedPrecondition, NotFound, Unavailable } from "../../core/errors.ts";
import type { TwinRef } from "../../core/ids.ts";
import type { Logger } from "../../observability/logger.ts";
import { DurableReports, type DurableReportsOptions } from "../ingress/durable-reports.ts";
import type { DesiredPush } from "../protocol.ts";
import {
  type CoapFailure,
  type CoapTarget,
  coapFailureOf,
  decodePayload,
  encodePayload,
  formatOf,
  MAX_RESPONSE_PAYLOAD,
  type PayloadFormat,
  parseTarget,
  screenDatagram,
} from "./coap-message.ts";
import { DesiredObservers } from "./desired-observers.ts";

type CoapRequest = InstanceType<typeof coap.IncomingMessage>;
type CoapResponse = InstanceType<typeof coap.OutgoingMessage> | InstanceType<typeof coap.ObserveWriteStream>;

/** Counters of the CoAP listener (exposed on the node). */
export interface CoapStats {
  /** Requests that reached a handler. */
  requests: number;
  /** Reports and telemetry messages acknowledged as durable. */
  stored: number;
  /** Requests refused with a 4.xx code (bad path, payload, credential...). */
  refused: number;
  /** Of those, refused for a missing, wrong or revoked credential. */
  unauthorized: number;
  /** Refused with 5.03: admission control, the device's rate, or the ingress not storing in time. */
  unavailable: number;
  /** Datagrams answered or dropped before the CoAP library (malformed, block-wise, bad options). */
  screened: number;
  /** Desired-state notifications sent. */
  notifications: number;
}

/** What the listener needs: the shared durable report path's settings, minus what CoAP fixes itself. */
export interface CoapIngressOptions extends Omit<DurableReportsOptions, "source" | "credentialHint"> {
  readonly host: string;
  readonly port: number;
  readonly logger: Logger;
  readonly maxObservers: number;
  readonly maxObserversPerDevice: number;
}

/** The largest datagram looked at: the payload limit and room for header and options. */
const HEADER_ROOM = 512;

export class CoapIngress {
  readonly stats: CoapStats = {
    requests: 0,
    stored: 0,
    refused: 0,
    unauthorized: 0,
    unavailable: 0,
    screened: 0,
    notifications: 0,
  };
  readonly #server: InstanceType<typeof coap.Server>;
  readonly #socket: Socket;
  readonly #observers: DesiredObservers;
  readonly #reports: DurableReports;
  #address = "";

  private constructor(
    private readonly options: CoapIngressOptions,
    socket: Socket,
  ) {
    this.#socket = socket;
    this.#reports = new DurableReports({
      ...options,
      source: "coap",
      credentialHint: "add ?token=<the device's password from 'doppel devices provision'>",
    });
    this.#observers = new DesiredObservers(
      options.transport,
      options.maxObservers,
      options.maxObserversPerDevice,
      options.logger,
    );
    // Responses are cached for retransmissions (bounded by bytes); no proxying.
    this.#server = coap.createServer({ piggybackReplyMs: 50, cacheSize: 4 * 1024 * 1024 });
    this.#server.on("request", (req: CoapRequest, res: CoapResponse) => void this.#handle(req, res));
    this.#server.on("error", (error: Error) => options.logger.warn({ err: error }, "CoAP server error"));
  }

  /** Binds the UDP socket and serves. Fails with `Unavailable` when the address cannot be bound. */
  static async start(options: CoapIngressOptions): Promise<CoapIngress> {
    const socket = createSocket({ type: isIPv6(options.host) ? "udp6" : "udp4" });
    await new Promise<void>((resolve, reject) => {
      socket.once("error", (error) =>
        reject(new Unavailable(`cannot serve CoAP on ${options.host}:${options.port}: ${error.message}`)),
      );
      socket.bind(options.port, options.host, () => resolve());
    });
    const ingress = new CoapIngress(options, socket);
    ingress.#listen();
    return ingress;
  }

  #listen(): void {
    const socket = this.#socket;
    this.#server.listen(socket);
    // Every datagram is screened before the library parses it (see screenDatagram).
    socket.removeAllListeners("message");
    const handle = this.#server.handleRequest();
    const maxDatagram = this.options.limits.maxBytes + HEADER_ROOM;
    socket.on("message", (datagram: Buffer, peer: RemoteInfo) => {
      try {
        const screened = screenDatagram(datagram, maxDatagram);
        if (screened.pass) {
          handle(datagram, peer);
          return;
        }
        this.stats.screened++;
        if (screened.reply) socket.send(screened.reply, peer.port, peer.address);
      } catch (error) {
        this.options.logger.warn({ err: error }, "CoAP datagram not handled");
      }
    });
    socket.on("error", (error) => this.options.logger.warn({ err: error }, "CoAP socket error"));
    const bound = socket.address();
    this.#address =
      bound.family === "IPv6" ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`;
  }

  /** The `host:port` the listener is bound to. */
  get address(): string {
    return this.#address;
  }

  /** Desired-state observations open now. */
  get observers(): number {
    return this.#observers.size;
  }

  /** What `/metrics` reads at scrape time: a copy of the counters and the open observations. */
  gauge(): { readonly counts: Readonly<Record<string, number>>; readonly observers: number } {
    return { counts: { ...this.stats }, observers: this.observers };
  }

  async #handle(req: CoapRequest, res: CoapResponse): Promise<void> {
    res.on("error", (error: Error) => this.options.logger.debug({ err: error }, "CoAP response not sent"));
    this.stats.requests++;
    try {
      const options = req._packet.options ?? [];
      const values = (name: string) => options.filter((o) => o.name === name).map((o) => String(o.value));
      const target = parseTarget(values("Uri-Path"), values("Uri-Query"));
      if (!this.options.registry.has(target.ref.type))
        throw new NotFound(`no twin type '${target.ref.type}' on this node`);
      this.#reports.authenticate(target.ref, target.token);
      const method = req.method;
      if (target.resource === "desired") {
        if (method !== "GET")
          throw new MethodNotAllowed(`${method} on desired: use GET (with Observe to watch)`);
        await this.#desired(req, res, target);
        return;
      }
      if (method !== "POST") throw new MethodNotAllowed(`${method} on ${target.resource}: use POST`);
      await this.#store(req, target);
      this.stats.stored++;
      (res as InstanceType<typeof coap.OutgoingMessage>).code =
        target.resource === "reported" ? "2.04" : "2.01";
      res.end();
    } catch (error) {
      this.#fail(res, error);
    }
  }

  /** Checks the `token` against the credentials file (required unless the listener is open). */
  /** Decodes a report or telemetry message (JSON or CBOR) and stores it durably (see {@link DurableReports}). */
  async #store(req: CoapRequest, target: CoapTarget): Promise<void> {
    const format = formatOf(req.headers["Content-Format"]);
    const payload = req.payload ?? Buffer.alloc(0);
    const what = target.resource === "reported" ? "reported patch" : "telemetry";
    const body = decodePayload(payload, format, what, this.options.limits);
    // Without an id of its own, a message is named by its CoAP exchange: a retransmission that
    // the library did not answer from its cache (it came while the first copy was in flight) is
    // dropped by the stream's (or the twin's) deduplication.
    const token = (req._packet.token ?? Buffer.alloc(0)).toString("hex");
    const messageId =
      target.messageId ?? `coap:${req.rsinfo.address}:${req.rsinfo.port}:${req._packet.messageId}:${token}`;
    await this.#reports.store(target.ref, target.resource === "reported" ? "reported" : "telemetry", body, {
      seq: target.seq,
      at: target.at,
      messageId,
    });
  }

  /** GET desired: the current state, and with Observe every later change. */
  async #desired(req: CoapRequest, res: CoapResponse, target: CoapTarget): Promise<void> {
    const format = formatOf(req.headers["Accept"]);
    const peer = `${req.rsinfo.address}:${req.rsinfo.port}:${(req._packet.token ?? Buffer.alloc(0)).toString("hex")}`;
    const observe = req.headers["Observe"];
    if (observe === 1) this.#observers.remove(target.ref, peer);
    if (observe !== 0) {
      const state = await this.#sync(target.ref);
      this.#send(res, format, state, true);
      return;
    }
    const stream = res as InstanceType<typeof coap.ObserveWriteStream>;
    const observation = {
      key: peer,
      notify: (push: DesiredPush) => {
        this.stats.notifications++;
        if (!this.#send(stream, format, push, false)) this.#observers.remove(target.ref, peer, observation);
      },
      end: () => stream.end(),
    };
    const registration = this.#observers.add(target.ref, observation);
    // The client cancelled (RST) or stopped acknowledging confirmable notifications.
    stream.on("finish", () => this.#observers.remove(target.ref, peer, observation));
    try {
      registration.deliver(await this.#sync(target.ref));
    } catch (error) {
      this.#observers.remove(target.ref, peer, observation);
      throw error;
    }
  }

  async #sync(ref: TwinRef): Promise<DesiredPush> {
    const reply = await this.#reports.state(ref);
    return { version: reply.version, desired: reply.desired, delta: reply.delta };
  }

  /**
   * Sends desired state (a response, or a notification when `once` is false); false when it does
   * not fit one datagram (the client gets 5.01 and, observing, its observation ends).
   */
  #send(res: CoapResponse, format: PayloadFormat, push: DesiredPush, once: boolean): boolean {
    const payload = encodePayload(push, format);
    if (payload.length > MAX_RESPONSE_PAYLOAD) {
      this.#fail(
        res,
        new FailedPrecondition(
          `desired state of ${payload.length} bytes does not fit one CoAP datagram (${MAX_RESPONSE_PAYLOAD}); block-wise transfer is not offered: read it over NATS sync or gRPC`,
        ),
        "5.01",
      );
      return false;
    }
    res.setOption("Content-Format", format === "cbor" ? "application/cbor" : "application/json");
    if (once) {
      (res as InstanceType<typeof coap.OutgoingMessage>).code = "2.05";
      res.end(payload);
    } else {
      (res as InstanceType<typeof coap.ObserveWriteStream>).statusCode = "2.05";
      res.write(payload);
    }
    return true;
  }

  #fail(res: CoapResponse, error: unknown, code?: string): void {
    const failure: CoapFailure =
      error instanceof MethodNotAllowed
        ? { code: "4.05", diagnostic: `METHOD_NOT_ALLOWED: ${error.message}` }
        : { ...coapFailureOf(error), ...(code ? { code } : {}) };
    if (failure.code === "4.01" || failure.code === "4.03") this.stats.unauthorized++;
    if (failure.code.startsWith("4.")) this.stats.refused++;
    else this.stats.unavailable++;
    this.options.logger.debug({ code: failure.code, err: failure.diagnostic }, "CoAP request refused");
    try {
      if (failure.maxAgeSeconds !== undefined) res.setOption("Max-Age", failure.maxAgeSeconds);
      const diagnostic = Buffer.from(failure.diagnostic.slice(0, 400), "utf8");
      if (res instanceof coap.ObserveWriteStream) {
        // An error ends (or refuses) an observation: sent without an Observe option, which the
        // stream's write would add (RFC 7641 §4.2). `_doSend` is the stream's own send of a packet.
        res.statusCode = failure.code;
        (res as unknown as { _doSend(data: Buffer): void })._doSend(diagnostic);
        return;
      }
      res.code = failure.code;
      res.end(diagnostic);
    } catch (sendError) {
      this.options.logger.debug({ err: sendError }, "CoAP error response not sent");
    }
  }

  /** Ends every observation and closes the socket. */
  async stop(): Promise<void> {
    this.#observers.close();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    await new Promise<void>((resolve) => this.#socket.close(() => resolve()));
  }
}

/** A method the resource does not offer (4.05). */
class MethodNotAllowed extends Error {}
