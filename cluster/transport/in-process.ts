/**
 * In-process transport: a message bus inside one process with NATS semantics (wildcards, queue
 * groups, request/reply, no-responders). The embedded default and tests use it. Deliveries are
 * asynchronous (next macrotask) like a network, so no handler runs inside a publisher's call.
 */

import { tokensMatch, validSubject } from "./subjects.ts";
import {
  type DurableAck,
  type Headers,
  type PublishOptions,
  type RequestOptions,
  type SubscribeOptions,
  type Subscription,
  type Transport,
  TransportError,
  type TransportMessage,
} from "./transport.ts";

interface Sub {
  readonly pattern: string;
  /** `pattern` split into its tokens, once. */
  readonly tokens: readonly string[];
  readonly queue: string | undefined;
  readonly handler: (message: TransportMessage) => void;
  readonly owner: InProcessTransport;
}

const NO_HEADERS: Headers = new Map();

/** The bus that connects every {@link InProcessTransport} made from it (like one NATS server). */
export class InProcessBus {
  readonly subs = new Set<Sub>();
  #inbox = 0;

  /** A new connection to this bus. */
  connect(): InProcessTransport {
    return new InProcessTransport(this);
  }

  nextInbox(): string {
    return `_INBOX.${(this.#inbox++).toString(36)}`;
  }

  /** True when some subscription matches `subject`. */
  matches(subject: string): boolean {
    const tokens = subject.split(".");
    for (const sub of this.subs) if (tokensMatch(sub.tokens, tokens)) return true;
    return false;
  }

  /** Delivers to every plain subscriber and to one member per queue group; returns how many got it. */
  deliver(message: TransportMessage): number {
    const tokens = message.subject.split(".");
    let groups: Map<string, Sub[]> | undefined;
    const targets: Sub[] = [];
    for (const sub of this.subs) {
      if (!tokensMatch(sub.tokens, tokens)) continue;
      if (sub.queue === undefined) targets.push(sub);
      else {
        groups ??= new Map();
        const members = groups.get(sub.queue);
        if (members) members.push(sub);
        else groups.set(sub.queue, [sub]);
      }
    }
    for (const members of groups?.values() ?? []) {
      const chosen = members[Math.floor(Math.random() * members.length)];
      if (chosen) targets.push(chosen);
    }
    for (const sub of targets) {
      setImmediate(() => {
        if (!this.subs.has(sub)) return;
        try {
          sub.handler(message);
        } catch {
          // A subscriber's failure is its own.
        }
      });
    }
    return targets.length;
  }
}

export class InProcessTransport implements Transport {
  #closed = false;
  readonly #mine = new Set<Sub>();

  constructor(private readonly bus: InProcessBus) {}

  #check(subject: string, wildcards: boolean): void {
    if (this.#closed) throw new TransportError("closed", "transport is closed");
    if (!validSubject(subject, wildcards))
      throw new TransportError("bad-subject", `invalid subject ${JSON.stringify(subject)}`);
  }

  publish(subject: string, data: Uint8Array, options: PublishOptions = {}): void {
    this.#check(subject, false);
    this.bus.deliver({ subject, data, headers: options.headers ?? NO_HEADERS, reply: undefined });
  }

  reachesAnyone(subject: string): boolean {
    return !this.#closed && this.bus.matches(subject);
  }

  subscribe(
    subject: string,
    handler: (message: TransportMessage) => void,
    options: SubscribeOptions = {},
  ): Subscription {
    this.#check(subject, true);
    const sub: Sub = {
      pattern: subject,
      tokens: subject.split("."),
      queue: options.queue,
      handler,
      owner: this,
    };
    this.bus.subs.add(sub);
    this.#mine.add(sub);
    return {
      unsubscribe: () => {
        this.bus.subs.delete(sub);
        this.#mine.delete(sub);
      },
    };
  }

  request(subject: string, data: Uint8Array, options: RequestOptions): Promise<TransportMessage> {
    this.#check(subject, false);
    const inbox = this.bus.nextInbox();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        sub.unsubscribe();
        reject(new TransportError("timeout", `no reply on ${subject} within ${options.timeoutMs} ms`));
      }, options.timeoutMs);
      const sub = this.subscribe(inbox, (reply) => {
        clearTimeout(timer);
        sub.unsubscribe();
        resolve(reply);
      });
      const delivered = this.bus.deliver({
        subject,
        data,
        headers: options.headers ?? NO_HEADERS,
        reply: inbox,
      });
      if (delivered === 0) {
        clearTimeout(timer);
        sub.unsubscribe();
        reject(new TransportError("no-responders", `no responders on ${subject}`));
      }
    });
  }

  respond(message: TransportMessage, data: Uint8Array, options: PublishOptions = {}): void {
    if (message.reply !== undefined && !this.#closed) this.publish(message.reply, data, options);
  }

  async publishDurable(
    subject: string,
    data: Uint8Array,
    options: { messageId?: string; timeoutMs: number; headers?: Headers },
  ): Promise<DurableAck> {
    const headers = new Map(options.headers ?? NO_HEADERS);
    if (options.messageId !== undefined) headers.set("Nats-Msg-Id", options.messageId);
    // In-process, the ingress replies once the report is persisted: that reply is the ack.
    const reply = await this.request(subject, data, { timeoutMs: options.timeoutMs, headers });
    return { duplicate: reply.headers.get("Doppel-Duplicate") === "true", data: reply.data };
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const sub of this.#mine) this.bus.subs.delete(sub);
    this.#mine.clear();
  }
}
