/**
 * Whether the node a call waits on is still there. A call to another node waits for its answer
 * until its deadline (30 s by default); a node that was killed never answers. While calls wait
 * on a node, it is pinged every `everyMs` on its RPC subject: NATS answers "no responders" at
 * once when nobody listens there any more (the node's connection closed, as when its process
 * died), and every call waiting on it is then told the node is gone. A node that is merely slow
 * or paused still holds its subscription, so its calls keep waiting (up to their deadline).
 * Calls that end within `everyMs` are never pinged for.
 */
import { type Transport, TransportError } from "../../cluster/transport/transport.ts";
import { nodeSubject, PING_REQUEST } from "./protocol.ts";

/** What {@link NodeLiveness.watch} resolves to when the node went away first. */
export const GONE: unique symbol = Symbol("node gone");

interface Watch {
  users: number;
  probing: boolean;
  readonly timer: NodeJS.Timeout;
  readonly gone: Promise<typeof GONE>;
  markGone(): void;
}

export class NodeLiveness {
  readonly #watched = new Map<string, Watch>();

  constructor(
    private readonly transport: Transport,
    private readonly everyMs: number,
  ) {}

  /** Waits for `call`, or until `nodeId` is found gone ({@link GONE}), whichever comes first. */
  async watch<T>(nodeId: string, call: Promise<T>): Promise<T | typeof GONE> {
    const watch = this.#watched.get(nodeId) ?? this.#start(nodeId);
    watch.users++;
    try {
      return await Promise.race([call, watch.gone]);
    } finally {
      if (--watch.users === 0) this.#end(nodeId, watch);
    }
  }

  #start(nodeId: string): Watch {
    let markGone: () => void = () => {};
    const gone = new Promise<typeof GONE>((resolve) => {
      markGone = () => resolve(GONE);
    });
    const watch: Watch = {
      users: 0,
      probing: false,
      timer: setInterval(() => this.#probe(nodeId, watch), this.everyMs),
      gone,
      markGone,
    };
    watch.timer.unref();
    this.#watched.set(nodeId, watch);
    return watch;
  }

  #end(nodeId: string, watch: Watch): void {
    clearInterval(watch.timer);
    if (this.#watched.get(nodeId) === watch) this.#watched.delete(nodeId);
  }

  #probe(nodeId: string, watch: Watch): void {
    if (watch.probing) return;
    watch.probing = true;
    this.transport
      .request(nodeSubject(nodeId), PING_REQUEST, { timeoutMs: this.everyMs })
      .then(
        () => undefined,
        (error: unknown) => {
          if (error instanceof TransportError && error.failure === "no-responders") {
            // Gone: every call waiting on it hears so; a later call starts a fresh watch.
            this.#end(nodeId, watch);
            watch.markGone();
          }
        },
      )
      .finally(() => {
        watch.probing = false;
      });
  }
}
