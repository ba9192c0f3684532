/**
 * `host:port` addresses as configuration and flags give them: a name or IPv4 address
 * (`localhost:50051`, `0.0.0.0:9464`) or a bracketed IPv6 address (`[::1]:50064`, `[::]:0`), as
 * in URLs. Every listen address is parsed here.
 */
import { isIPv6 } from "node:net";
import { InvalidArgument } from "./errors.ts";

export interface HostPort {
  /** The host without brackets (`::1`, `localhost`). */
  readonly host: string;
  readonly port: number;
}

const NAME = /^[A-Za-z0-9._-]+$/;

/** Why `text` is not an address, or undefined when it is one. */
function problem(text: string): string | undefined {
  const bracketed = /^\[([^\]]*)\]:(\d{1,5})$/.exec(text);
  const plain = bracketed ? undefined : /^([^:[\]]*):(\d{1,5})$/.exec(text);
  const match = bracketed ?? plain;
  if (!match) {
    return text.split(":").length > 2 && !text.startsWith("[")
      ? "an IPv6 host must be in brackets, e.g. [::1]:50051"
      : "must be host:port (or [IPv6]:port)";
  }
  const host = match[1]!;
  if (bracketed ? !isIPv6(host) : !NAME.test(host)) return `"${host}" is not a host name or address`;
  if (Number(match[2]) > 65_535) return `port ${match[2]} is above 65535`;
  return undefined;
}

/** A zod-friendly check: true for a valid `host:port` / `[IPv6]:port`. */
export function isHostPort(text: string): boolean {
  return problem(text) === undefined;
}

/** The message {@link parseHostPort} refuses `text` with (for schema issues). */
export function hostPortProblem(text: string): string {
  return problem(text) ?? "";
}

/** Parses `host:port` or `[IPv6]:port`; `InvalidArgument` naming `what` otherwise. */
export function parseHostPort(text: string, what = "address"): HostPort {
  const why = problem(text);
  if (why !== undefined) throw new InvalidArgument(`${what} ${JSON.stringify(text)}: ${why}`);
  const colon = text.lastIndexOf(":");
  const host = text.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
  return { host, port: Number(text.slice(colon + 1)) };
}

/** Formats an address back, bracketing an IPv6 host: `[::1]:50064`. */
export function formatHostPort(host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}
