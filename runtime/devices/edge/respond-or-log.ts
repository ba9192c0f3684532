/**
 * Answering a NATS request from a subscription callback without letting the answer fail the
 * connection. nats.js calls a subscription's callback synchronously from its socket reader, and
 * anything the callback throws ends that reader ("reader closed"): the connection stays open but
 * reads nothing more, so every subscription of the node on it goes silent. `Msg.respond` throws
 * (nats.js 3.4) for an answer larger than the server's `max_payload` or with headers on a server
 * without them; a throw in a promise chain started in the callback is an unhandled rejection.
 * Here it is logged and the subscription goes on serving. A request published without a reply
 * subject has no one to answer: nats.js sends nothing (`respond` gives false), logged at debug.
 * (An answer on a connection already closed or draining does not throw in nats.js 3.4: it is
 * dropped.)
 *
 * Used by every request handler of the edge subsystem: the edge's status (edge-forwarder.ts), the
 * revocation feed, and replication's status, edge-log status and source registrar.
 */
import type { Msg } from "@nats-io/nats-core";
import type { Logger } from "../../observability/logger.ts";
import { encodeJson } from "../protocol.ts";

/**
 * Sends `body` (as JSON) to `message`'s reply subject; returns whether it went out. Never throws:
 * a reply that cannot be sent is logged as `<what>: cannot reply`.
 */
export function respondOrLog(message: Msg, body: unknown, logger: Logger, what: string): boolean {
  try {
    if (message.respond(encodeJson(body))) return true;
    logger.debug({ subject: message.subject }, `${what}: a request without a reply subject, not answered`);
  } catch (error) {
    logger.warn({ subject: message.subject, err: String(error) }, `${what}: cannot reply`);
  }
  return false;
}

/**
 * A subscription callback that answers every request with what `answer` gives (a value, or a
 * promise of one) through {@link respondOrLog}: the status subjects' handler. A subscription
 * error (a permission violation; it comes with no message to answer) and an `answer` that fails
 * are logged as `<what>: …`.
 */
export function answerEach(
  logger: Logger,
  what: string,
  answer: () => unknown,
): (error: Error | null, message: Msg) => void {
  return (error, message) => {
    if (error) {
      logger.warn({ err: error.message }, `${what}: subscription error`);
      return;
    }
    const body = answer();
    if (!(body instanceof Promise)) {
      respondOrLog(message, body, logger, what);
      return;
    }
    body.then(
      (value: unknown) => respondOrLog(message, value, logger, what),
      (failure: unknown) => logger.warn({ err: String(failure) }, `${what}: cannot answer a request`),
    );
  };
}
