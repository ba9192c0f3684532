/**
 * A fake NATS connection for a cloud-side request handler's unit tests (source registrar,
 * revocation feed): it captures the handler's subscription, so a test hands it requests and reads
 * the answers, and its JetStream API knows the account (`$JS.API.INFO`) at once but answers every
 * other API request ("stream not found") only once `release()`d. Requests the handler is working
 * on therefore stay in flight until the test lets them go: a barrier, not a timer.
 */
import type { Msg, NatsConnection, SubscriptionOptions } from "@nats-io/nats-core";

const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
const reply = (data: Uint8Array) => ({ data, json: () => JSON.parse(new TextDecoder().decode(data)) });

/** An answer the handler sent: its error code, or what it gave. */
export type HandlerAnswer = { code?: string; ok?: unknown };

export interface HeldJetStream {
  readonly nc: NatsConnection;
  /** What the handler answered, in order. */
  readonly answers: HandlerAnswer[];
  /** JetStream API requests waiting for `release()`. */
  readonly held: () => number;
  /** Lets every JetStream API request (held and later) be answered. */
  release(): void;
  /** Hands the handler a request on `subject` with `body`; `respond` replaces the recording one. */
  request(subject: string, body: unknown, respond?: (data: Uint8Array) => boolean): void;
  /** Hands the handler a subscription error (it comes with an empty message, as from nats.js). */
  subscriptionError(error: Error): void;
}

export function heldJetStream(domain = "cloud"): HeldJetStream {
  let callback: ((error: Error | null, message: Msg) => void) | undefined;
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let held = 0;
  const nc = {
    options: {},
    async request(subject: string) {
      if (subject === "$JS.API.INFO") return reply(json({ domain }));
      held++;
      await released;
      held--;
      return reply(json({ error: { code: 404, err_code: 10059, description: "stream not found" } }));
    },
    subscribe(_subject: string, options: SubscriptionOptions) {
      callback = options.callback as typeof callback;
      return { unsubscribe() {} };
    },
  } as unknown as NatsConnection;
  const answers: HandlerAnswer[] = [];
  const record = (data: Uint8Array) => {
    const answer = JSON.parse(new TextDecoder().decode(data));
    answers.push(answer.error ? { code: answer.error.code } : { ok: answer.ok });
    return true;
  };
  return {
    nc,
    answers,
    held: () => held,
    release,
    request: (subject, body, respond = record) =>
      callback!(null, { subject, data: json(body), respond } as unknown as Msg),
    subscriptionError: (error) => callback!(error, {} as Msg),
  };
}
