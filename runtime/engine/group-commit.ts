/**
 * Group commit: commits from many twins that become ready close together are written to the
 * store in one call (one SQLite transaction, one round of Cassandra batches), which is what makes
 * small turns cheap. A commit's listener hears (or its promise settles) only when the store has
 * answered for it, so nothing is acknowledged before it is persisted.
 *
 * Invariant: the activation hands over at most one commit per twin at a time, so commits of one
 * twin reach the store in order.
 */
import { DoppelError, Unavailable } from "../core/errors.ts";
import type { TwinCommit } from "../core/records.ts";
import { stageClock } from "../observability/stage-clock.ts";
import { inSpan, SpanKind, traces } from "../observability/tracing.ts";
import type { EventStore } from "../persistence/event-store.ts";

export interface GroupCommitOptions {
  /** Most commits in one store call. */
  readonly maxBatch: number;
  /** Most store calls in flight at once. */
  readonly maxInFlight: number;
}

/** Who waits for a commit: told once, when the store has answered for it. */
export interface CommitListener {
  /** The commit is persisted. */
  written(commit: TwinCommit): void;
  /** The commit was refused or failed (nothing of it may be assumed written unless the error says so). */
  failed(commit: TwinCommit, error: DoppelError): void;
}

/** A listener that settles a promise (for {@link GroupCommitter.submit}). */
class Settles implements CommitListener {
  constructor(
    readonly resolve: () => void,
    readonly reject: (error: DoppelError) => void,
  ) {}
  written(): void {
    this.resolve();
  }
  failed(_commit: TwinCommit, error: DoppelError): void {
    this.reject(error);
  }
}

/** Observes each store call (for metrics): commits written and the call's duration. */
export type CommitObserver = (commits: number, events: number, millis: number, failed: boolean) => void;

export class GroupCommitter {
  /** The queued commits, and at the same index who waits for each (two arrays: no object per commit). */
  #queue: TwinCommit[] = [];
  #listeners: CommitListener[] = [];
  #inFlight = 0;
  #scheduled = false;
  #idleWaiters: (() => void)[] = [];

  constructor(
    private readonly store: EventStore,
    private readonly options: GroupCommitOptions,
    private readonly observe: CommitObserver = () => {},
    /** Checked for each commit right before the store call; an error refuses that commit unwritten. */
    private readonly fence: (commit: TwinCommit) => DoppelError | undefined = () => undefined,
  ) {}

  /** Queues a commit; resolves once it is persisted, rejects with the store's error for it. */
  submit(commit: TwinCommit): Promise<void> {
    return new Promise((resolve, reject) => this.enqueue(commit, new Settles(resolve, reject)));
  }

  /** Queues a commit; `listener` hears once it is persisted or failed (no promise per commit). */
  enqueue(commit: TwinCommit, listener: CommitListener): void {
    this.#queue.push(commit);
    this.#listeners.push(listener);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#flushSoon);
    }
  }

  readonly #flushSoon = (): void => {
    this.#scheduled = false;
    this.#flush();
  };

  /** Commits queued or being written. */
  get backlog(): number {
    return this.#queue.length + this.#inFlight;
  }

  /** Resolves when nothing is queued or in flight. */
  whenIdle(): Promise<void> {
    if (this.backlog === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #flush(): void {
    while (this.#queue.length > 0 && this.#inFlight < this.options.maxInFlight) {
      const commits = this.#queue.splice(0, this.options.maxBatch);
      const listeners = this.#listeners.splice(0, commits.length);
      this.#inFlight++;
      void this.#write(commits, listeners);
    }
  }

  async #write(all: TwinCommit[], allListeners: CommitListener[]): Promise<void> {
    const started = performance.now();
    let failed = false;
    // The commits that pass the fence, and their listeners at the same index.
    const commits: TwinCommit[] = [];
    const listeners: CommitListener[] = [];
    // One listener's throw neither keeps the others from hearing nor stops the flush; it is
    // rethrown once all have heard.
    let thrown: { error: unknown } | undefined;
    const tell = (commit: TwinCommit, listener: CommitListener, error: DoppelError | undefined) => {
      try {
        if (error) listener.failed(commit, error);
        else listener.written(commit);
      } catch (caught) {
        thrown ??= { error: caught };
      }
    };
    for (let i = 0; i < all.length; i++) {
      const commit = all[i]!;
      const refusal = this.fence(commit);
      if (refusal) tell(commit, allListeners[i]!, refusal);
      else {
        commits.push(commit);
        listeners.push(allListeners[i]!);
      }
    }
    let results: readonly (DoppelError | undefined)[] = [];
    let failure: DoppelError | undefined;
    let events = 0;
    for (const commit of commits) events += commit.events.length;
    try {
      if (commits.length > 0) {
        for (const commit of commits) stageClock("commit-start", commit.ref.id, commits.length);
        results = traces()
          ? await inSpan(
              "persist",
              SpanKind.CLIENT,
              { "doppel.commits": commits.length, "doppel.events": events },
              () => this.store.commit(commits),
            )
          : await this.store.commit(commits);
      }
    } catch (error) {
      failed = true;
      failure =
        error instanceof DoppelError && error.retryable
          ? error
          : new Unavailable(`event store write failed: ${DoppelError.from(error).message}`, undefined, {
              cause: error,
            });
    }
    this.#inFlight--;
    for (const commit of commits) stageClock("commit-done", commit.ref.id);
    this.observe(commits.length, events, performance.now() - started, failed);
    // Listeners hear synchronously: what they queue next (a twin's next batch) joins this flush.
    for (let i = 0; i < commits.length; i++) tell(commits[i]!, listeners[i]!, failure ?? results[i]);
    this.#flush();
    if (this.backlog === 0) for (const resolve of this.#idleWaiters.splice(0)) resolve();
    if (thrown) throw thrown.error;
  }
}
