/**
 * What an edge's name may be (docs/edge.md): it is the edge's JetStream domain and a token of its
 * subjects (`doppel.edge.<edge>.…`), so a letter then letters, digits, `_` or `-`, at most 63 in
 * all. The cloud's JetStream domain (`edge.hubDomain`) follows the same rule. One definition for
 * the configuration check, the hub's per-edge users, source registration and routed-down calls.
 */
import { InvalidArgument } from "./errors.ts";

/** An edge name, whole. */
export const EDGE_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,62}$/;

/** What a name that does not match {@link EDGE_NAME} is told (after the name). */
export const EDGE_NAME_RULE = "must be a letter then up to 62 letters, digits, '_' or '-'";

/** Whether `name` is an edge name. */
export function isEdgeName(name: string): boolean {
  return EDGE_NAME.test(name);
}

/**
 * `name` if it is an edge name; else `InvalidArgument` (`details.field = "edge"`) saying the rule,
 * with `where` (" in <subject>") after the name when the caller has one.
 */
export function checkEdgeName(name: string, where = ""): string {
  if (!isEdgeName(name))
    throw new InvalidArgument(`edge name ${JSON.stringify(name)}${where} ${EDGE_NAME_RULE}`, {
      field: "edge",
    });
  return name;
}
