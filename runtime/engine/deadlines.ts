/**
 * Deadlines of many waits on one clock timer. A caller's wait on its turn (an envelope, see
 * `envelope.ts`) has a deadline; a timer per wait costs an allocation and a timer-list insert and removal per report.
 * Here waits are kept in buckets of `BUCKET_MS` by deadline, and one timer is armed for the
 * earliest deadline: a wait that settles first just leaves its bucket. A wait expires exactly at
 * its deadline (as the clock sees it; the timer fires for the earliest deadline and every wait due
 * by then expires together).
 */
import type { Clock, TimerHandle } from "../core/clock.ts";

const BUCKET_MS = 64;

/** One wait: `expire` runs at its deadline unless `cancel` came first. */
export interface Deadline {
  cancel(): void;
}

/** What a wait calls at its deadline: an object with `expire()`, so a caller need allocate no closure. */
export interface Expiring {
  expire(): void;
}

/**
 * A wait kept in the buckets. A caller with an object per wait anyway (an envelope) extends it
 * and is its own wait ({@link Deadlines.insert}): nothing more is allocated per wait. A bucket is
 * a list through its waits (`previous`/`next`), so arming and cancelling a wait allocates nothing.
 */
export abstract class Waiting implements Deadline, Expiring {
  /** The bucket holding this wait while it is armed. */
  bucket: Bucket | undefined = undefined;
  /** The waits before and after this one in its bucket. */
  previous: Waiting | undefined = undefined;
  next: Waiting | undefined = undefined;
  /** The deadline (clock time) it was armed for. */
  at = 0;
  abstract expire(): void;
  cancel(): void {
    this.bucket?.remove(this);
  }
}

/** The waits whose deadlines fall in one `BUCKET_MS` span, as a list in the order they were armed. */
class Bucket {
  first: Waiting | undefined = undefined;
  last: Waiting | undefined = undefined;
  size = 0;

  add(wait: Waiting): void {
    wait.bucket = this;
    wait.previous = this.last;
    wait.next = undefined;
    if (this.last) this.last.next = wait;
    else this.first = wait;
    this.last = wait;
    this.size++;
  }

  remove(wait: Waiting): void {
    if (wait.previous) wait.previous.next = wait.next;
    else this.first = wait.next;
    if (wait.next) wait.next.previous = wait.previous;
    else this.last = wait.previous;
    wait.bucket = wait.previous = wait.next = undefined;
    this.size--;
  }
}

/** The wait of {@link Deadlines.add}: calls its target. */
class Wait extends Waiting {
  constructor(readonly target: Expiring | (() => void)) {
    super();
  }
  expire(): void {
    if (typeof this.target === "function") this.target();
    else this.target.expire();
  }
}

export class Deadlines {
  /** Buckets by `floor(at / BUCKET_MS)`; their keys ascending in `#order`. */
  readonly #buckets = new Map<number, Bucket>();
  #order: number[] = [];
  #timer: TimerHandle | undefined;
  /** When the armed timer fires. */
  #armedAt = Number.POSITIVE_INFINITY;

  constructor(private readonly clock: Clock) {}

  /** Calls `expire` (or `expire.expire()`) at `at` (clock time) unless the returned deadline is cancelled before. */
  add(at: number, expire: Expiring | (() => void)): Deadline {
    const wait = new Wait(expire);
    this.insert(at, wait);
    return wait;
  }

  /** Arms `wait` (not armed already) for `at`: its `expire()` runs then unless its `cancel()` came first. */
  insert(at: number, wait: Waiting): void {
    wait.at = at;
    const key = Math.floor(at / BUCKET_MS);
    let bucket = this.#buckets.get(key);
    if (!bucket) {
      bucket = new Bucket();
      this.#buckets.set(key, bucket);
      const order = this.#order;
      // Deadlines mostly grow: the new key is usually the last one.
      if (order.length === 0 || order[order.length - 1]! < key) order.push(key);
      else order.splice(lowerBound(order, key), 0, key);
    }
    bucket.add(wait);
    if (at < this.#armedAt) this.#arm(at);
  }

  #arm(at: number): void {
    this.#timer?.cancel();
    this.#armedAt = at;
    this.#timer = this.clock.setTimeout(() => this.#fire(), Math.max(0, at - this.clock.now()));
  }

  #fire(): void {
    this.#timer = undefined;
    this.#armedAt = Number.POSITIVE_INFINITY;
    const now = this.clock.now();
    const due: Waiting[] = [];
    let next = Number.POSITIVE_INFINITY;
    let done = 0;
    for (const key of this.#order) {
      if (key * BUCKET_MS > now) {
        // Later buckets: the earliest non-empty one arms the next timer.
        const bucket = this.#buckets.get(key)!;
        if (bucket.size === 0) {
          this.#buckets.delete(key);
          done++;
          continue;
        }
        for (let wait = bucket.first; wait; wait = wait.next) next = Math.min(next, wait.at);
        break;
      }
      const bucket = this.#buckets.get(key)!;
      for (let wait = bucket.first; wait; ) {
        const following = wait.next;
        if (wait.at <= now) {
          bucket.remove(wait);
          due.push(wait);
        } else next = Math.min(next, wait.at);
        wait = following;
      }
      if (bucket.size > 0) break; // the current bucket still holds later waits
      this.#buckets.delete(key);
      done++;
    }
    // Drop the emptied keys (they are the first `done` in order, empty later ones left in place).
    if (done > 0) this.#order = this.#order.filter((key) => this.#buckets.has(key));
    if (next !== Number.POSITIVE_INFINITY) this.#arm(next);
    for (const wait of due) wait.expire();
  }
}

/** The first index of `sorted` whose value is at least `key`. */
function lowerBound(sorted: readonly number[], key: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid]! < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
