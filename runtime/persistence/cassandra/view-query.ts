/**
 * `queryViews` over the bucketed projection: the views of one type live in `viewBuckets`
 * partitions, each clustered by id. A page is a k-way merge of one cursor per partition, each
 * reading `twin_id > after` in chunks that grow while a filter keeps rejecting rows, so a page
 * reads only the partitions of its type and only as far as it needs — never a table scan.
 *
 * The page token names the last id examined (matched or not), so the next page neither repeats
 * a view nor re-reads the rows this page already rejected. A token is given only when another
 * row exists beyond the page.
 */

import type { TwinView, ViewPage } from "../../core/records.ts";
import type { ViewQuery } from "../event-store.ts";
import { decodePageToken, encodePageToken } from "../page-token.ts";
import { compareCodePoints } from "./buckets.ts";
import { decodeView } from "./rows.ts";
import type { CassandraSession } from "./session.ts";
import type { Statements } from "./statements.ts";

/** Largest chunk read from one partition in one round trip. */
const MAX_CHUNK = 1000;

interface Cursor {
  readonly bucket: number;
  after: string;
  chunk: number;
  buffer: TwinView[];
  exhausted: boolean;
}

/** Pages through the views of `type` in id order (see the module comment). */
export async function queryViews(
  session: CassandraSession,
  s: Statements,
  viewBuckets: number,
  type: string,
  query: ViewQuery,
): Promise<ViewPage> {
  const start = query.pageToken ? String(decodePageToken(query.pageToken, { after: "string" }).after) : "";
  const limit = Number.isFinite(query.limit) ? Math.floor(query.limit) : Number.MAX_SAFE_INTEGER;
  const views: TwinView[] = [];
  if (!(limit > 0)) return { views };
  const { match } = query;
  // Without a filter a page needs about limit/B rows of each partition; with one, more.
  const base = Math.ceil((limit + 1) / viewBuckets) + 2;
  const first = Math.min(MAX_CHUNK, match ? Math.max(base, 32) : base);
  const cursors: Cursor[] = Array.from({ length: viewBuckets }, (_, bucket) => ({
    bucket,
    after: start,
    chunk: first,
    buffer: [],
    exhausted: false,
  }));

  const refill = async (cursor: Cursor): Promise<void> => {
    const result = await session.execute(
      "query views",
      { query: s.viewsAfter, params: [type, cursor.bucket, cursor.after, cursor.chunk] },
      { consistency: "read", fetchSize: cursor.chunk },
    );
    cursor.buffer = result.rows.map((row) => decodeView(type, row));
    cursor.exhausted = result.rows.length < cursor.chunk;
    const last = cursor.buffer.at(-1);
    if (last) cursor.after = last.id;
    cursor.chunk = Math.min(MAX_CHUNK, cursor.chunk * 2);
  };

  let lastExamined = start;
  for (;;) {
    await Promise.all(cursors.filter((c) => c.buffer.length === 0 && !c.exhausted).map(refill));
    let next: Cursor | undefined;
    for (const cursor of cursors) {
      const head = cursor.buffer[0];
      if (head && (!next || compareCodePoints(head.id, next.buffer[0]!.id) < 0)) next = cursor;
    }
    if (!next) return { views };
    if (views.length >= limit) return { views, nextPageToken: encodePageToken({ after: lastExamined }) };
    const view = next.buffer.shift()!;
    lastExamined = view.id;
    if (!match || match(view)) views.push(view);
  }
}
