/**
 * mTLS: which principal a verified client certificate is. The gateway's TLS layer has already
 * checked the chain against `--tls-client-ca`; this maps the certificate's subject common name or
 * one of its subject alternative names to scopes, by the rules in the configuration
 * (`grpc.tls.clientCertificates`), with the rule's limits (rate, twin quota) like an API key's. A
 * verified certificate no rule matches gets no scopes, so every call it makes is refused with
 * PERMISSION_DENIED naming the scope.
 */
import type { PeerCertificate } from "node:tls";
import { grantPrincipal, type Principal, type Scope } from "../core/principal.ts";
import type { ApiKeyLimits } from "./api-keys.ts";

/** One mapping rule: a certificate whose CN or SAN matches gets these scopes and restrictions. */
export interface ClientCertificateRule {
  /** Subject common name, exactly. */
  readonly commonName?: string;
  /** A subject alternative name as Node prints it, e.g. `DNS:billing.internal`, `URI:spiffe://x/y`. */
  readonly san?: string;
  readonly scopes: readonly Scope[];
  readonly types?: readonly string[];
  readonly idPrefixes?: readonly string[];
  /** The principal's rate (token bucket) and twin quota, as an API key's (`doppel keys create --rate/--max-twins`). */
  readonly limits?: ApiKeyLimits;
}

/** The SANs of a certificate, as `DNS:x`, `URI:y`, `IP Address:z`... */
function sansOf(certificate: PeerCertificate): string[] {
  const text = certificate.subjectaltname;
  return typeof text === "string" && text !== "" ? text.split(/,\s*/) : [];
}

/** The principal of a verified client certificate under `rules` (first match wins), and its rule's limits. */
export function certificatePrincipal(
  certificate: PeerCertificate,
  rules: readonly ClientCertificateRule[],
): { readonly principal: Principal; readonly limits?: ApiKeyLimits } {
  const commonName = typeof certificate.subject?.CN === "string" ? certificate.subject.CN : undefined;
  const sans = sansOf(certificate);
  const id =
    commonName !== undefined ? `CN=${commonName}` : (sans[0] ?? `sha256:${certificate.fingerprint256}`);
  const rule = rules.find(
    (candidate) =>
      (candidate.commonName !== undefined && candidate.commonName === commonName) ||
      (candidate.san !== undefined && sans.includes(candidate.san)),
  );
  if (rule === undefined) return { principal: { kind: "mtls", id, scopes: [] } };
  return {
    principal: grantPrincipal("mtls", id, rule),
    ...(rule.limits ? { limits: rule.limits } : {}),
  };
}
