/**
 * Who is asking: the identity every entry point attaches to a request once it has authenticated
 * it — a service's API key, a client certificate (mTLS), a device credential, another node, or
 * nobody (a node running without security). Authorization is decided here, in one place, so the
 * gRPC gateway and device ingress apply the same rules: a principal holds scopes and may be
 * restricted to twin types and to id prefixes.
 */
import { PermissionDenied } from "./errors.ts";
import type { TwinRef } from "./ids.ts";

/** How a principal was authenticated. */
export type PrincipalKind = "service-key" | "mtls" | "device" | "node" | "anonymous";

/**
 * What a principal may do:
 * - `read`: get, query, watch, history, telemetry;
 * - `write`: update desired, report state;
 * - `command`: invoke commands;
 * - `admin`: keys, devices, cluster.
 */
export const SCOPES = ["read", "write", "command", "admin"] as const;
export type Scope = (typeof SCOPES)[number];

/** An authenticated identity and what it may touch. */
export interface Principal {
  readonly kind: PrincipalKind;
  /** Stable id within its kind: the key id, the certificate subject, `type/id` of a device, the node id. */
  readonly id: string;
  readonly scopes: readonly Scope[];
  /** When present, only twins of these types (an empty list allows no twin). */
  readonly types?: readonly string[];
  /** When present, only twins whose id starts with one of these prefixes. */
  readonly idPrefixes?: readonly string[];
}

/**
 * The principal `kind`/`id` granted a policy's scopes and restrictions (an API key's record, a
 * client certificate rule), with absent restrictions left out.
 */
export function grantPrincipal(
  kind: PrincipalKind,
  id: string,
  policy: Pick<Principal, "scopes" | "types" | "idPrefixes">,
): Principal {
  return {
    kind,
    id,
    scopes: policy.scopes,
    ...(policy.types ? { types: policy.types } : {}),
    ...(policy.idPrefixes ? { idPrefixes: policy.idPrefixes } : {}),
  };
}

/** The principal of a node that runs without security configured: everything is allowed. */
export const ANONYMOUS: Principal = Object.freeze({
  kind: "anonymous",
  id: "anonymous",
  scopes: Object.freeze([...SCOPES]),
});

/** True when `value` names a scope. */
export function isScope(value: string): value is Scope {
  return (SCOPES as readonly string[]).includes(value);
}

/**
 * The principal as recorded in event metadata and logs: `kind:id` (`service-key:k_3f2a…`,
 * `device:thermostat/t1`, `mtls:CN=billing`, `anonymous`).
 */
export function principalLabel(principal: Principal): string {
  return principal.kind === "anonymous" ? "anonymous" : `${principal.kind}:${principal.id}`;
}

/** True when the principal holds `scope`. */
export function hasScope(principal: Principal, scope: Scope): boolean {
  return principal.scopes.includes(scope);
}

/** True when the principal's type and id-prefix restrictions let it touch twins of `type` at all. */
export function mayTouchType(principal: Principal, type: string): boolean {
  return principal.types === undefined || principal.types.includes(type);
}

/** True when the principal's restrictions let it touch this twin. */
export function mayTouch(principal: Principal, ref: TwinRef): boolean {
  if (!mayTouchType(principal, ref.type)) return false;
  const prefixes = principal.idPrefixes;
  return prefixes === undefined || prefixes.some((prefix) => ref.id.startsWith(prefix));
}

/**
 * Refuses with `PermissionDenied` (naming what is missing) unless the principal holds `scope` and,
 * when a twin or a type is given, may touch it.
 */
export function authorize(
  principal: Principal,
  scope: Scope,
  target?: TwinRef | { readonly type: string },
): void {
  const who = principalLabel(principal);
  if (!hasScope(principal, scope)) {
    throw new PermissionDenied(`${who} lacks the '${scope}' scope`, { scope, principal: who });
  }
  if (target === undefined) return;
  if (!mayTouchType(principal, target.type)) {
    throw new PermissionDenied(`${who} may not touch twins of type '${target.type}'`, {
      scope,
      principal: who,
      type: target.type,
    });
  }
  if ("id" in target && !mayTouch(principal, target)) {
    throw new PermissionDenied(`${who} may not touch twin ${target.type}/${target.id} (id prefix)`, {
      scope,
      principal: who,
      type: target.type,
      id: target.id,
    });
  }
}
