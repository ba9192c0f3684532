/**
 * Test certificates made with openssl: a CA, a server certificate for localhost/127.0.0.1, and
 * client certificates with a given common name (and optional SAN), each signed by the CA. Written
 * to a fresh temporary folder; `remove` deletes it.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface CertificatePair {
  readonly cert: string;
  readonly key: string;
}

export interface TestCertificates {
  readonly dir: string;
  readonly ca: string;
  readonly server: CertificatePair;
  /** Signs a client certificate for `commonName` (and `san`, e.g. `URI:spiffe://corp/ops`). */
  client(commonName: string, san?: string): CertificatePair;
  /** A CA and server certificate nobody trusts (same names, another CA). */
  readonly stranger: { readonly ca: string; readonly server: CertificatePair };
  read(path: string): Buffer;
  remove(): void;
}

function openssl(dir: string, args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
}

function makeCa(dir: string, name: string): { cert: string; key: string } {
  const key = join(dir, `${name}-key.pem`);
  const cert = join(dir, `${name}.pem`);
  openssl(dir, [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
  ]);
  return { cert, key };
}

function sign(
  dir: string,
  ca: { cert: string; key: string },
  name: string,
  subject: string,
  san: string,
): CertificatePair {
  const key = join(dir, `${name}-key.pem`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.pem`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, `subjectAltName=${san}\n`);
  openssl(dir, ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", subject]);
  openssl(dir, [
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    ca.cert,
    "-CAkey",
    ca.key,
    "-CAcreateserial",
    "-out",
    cert,
    "-days",
    "2",
    "-extfile",
    ext,
  ]);
  return { cert, key };
}

/** Makes the certificates (a second or two of openssl). */
export function makeCertificates(): TestCertificates {
  const dir = mkdtempSync(join(tmpdir(), "doppel-certs-"));
  const ca = makeCa(dir, "ca");
  const server = sign(dir, ca, "server", "/CN=localhost", "DNS:localhost,IP:127.0.0.1");
  const strangerCa = makeCa(dir, "stranger-ca");
  const strangerServer = sign(
    dir,
    strangerCa,
    "stranger-server",
    "/CN=localhost",
    "DNS:localhost,IP:127.0.0.1",
  );
  let clients = 0;
  return {
    dir,
    ca: ca.cert,
    server,
    client: (commonName, san) =>
      sign(dir, ca, `client-${clients++}`, `/CN=${commonName}`, san ?? `DNS:${commonName}.clients.test`),
    stranger: { ca: strangerCa.cert, server: strangerServer },
    read: (path) => readFileSync(path),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
