/**
 * A secured nats-server for the device security tests, beside the open test server of
 * `scripts/infra/nats.sh` (which every other test uses and stays open). It runs the binary that
 * script built (`.infra/bin/nats-server`) on free loopback ports, with JetStream, an MQTT listener
 * and the auth callout configuration an operator would write (docs/security.md):
 *
 * - account `AUTH`: the callout service's user `doppel-auth` (the service subscribes there);
 * - account `DOPPEL` (JetStream): the node user `doppel-node` and, through the callout, devices;
 * - account `SYS`: the system user `doppel-sys` (to kick revoked devices);
 * - `authorization.auth_callout`: issuer = the public key of a fresh account nkey, account `AUTH`,
 *   `auth_users` the three users above (they skip the callout); everyone else is sent to Doppel.
 *
 * Options for `bench:ingest-auth`, which compares the same server with and without security:
 * `tls` (a server certificate: every client connection must then be TLS), `open` (no accounts and
 * no callout: anyone may connect and publish anywhere, as on the default test server) and
 * `syncAlways` (JetStream fsyncs every write, as `scripts/infra/nats.sh` configures it).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createAccount } from "@nats-io/nkeys";
import { freePort } from "../../../runtime/testing/free-port.ts";
import { eventually } from "../../support/eventually.ts";

const BINARY = join(process.cwd(), ".infra/bin/nats-server");

export interface SecuredNats {
  readonly url: string;
  readonly mqttUrl: string;
  readonly monitorUrl: string;
  /** Seed of the issuer account key (the node signs device JWTs with it). */
  readonly issuerSeed: string;
  readonly issuerPublicKey: string;
  readonly node: { readonly user: string; readonly pass: string };
  readonly auth: { readonly user: string; readonly pass: string };
  readonly system: { readonly user: string; readonly pass: string };
  readonly account: string;
  readonly dir: string;
  stop(): Promise<void>;
}

function secret(): string {
  return Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);
}

export interface SecuredNatsOptions {
  /** Serve clients over TLS only, with this certificate (PEM files). */
  readonly tls?: { readonly cert: string; readonly key: string };
  /** No accounts and no auth callout (the insecure setup, for comparison). */
  readonly open?: boolean;
  /** `jetstream.sync_interval: always`. */
  readonly syncAlways?: boolean;
}

/** Starts a secured server; `stop()` kills it and removes its data. */
export async function startSecuredNats(options: SecuredNatsOptions = {}): Promise<SecuredNats> {
  if (!existsSync(BINARY)) throw new Error(`${BINARY} missing: run scripts/infra/nats.sh up first`);
  const [port, mqttPort, httpPort] = [await freePort(), await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmpdir(), "doppel-secured-nats-"));
  const issuer = createAccount();
  const issuerSeed = new TextDecoder().decode(issuer.getSeed());
  const issuerPublicKey = issuer.getPublicKey();
  const node = { user: "doppel-node", pass: secret() };
  const auth = { user: "doppel-auth", pass: secret() };
  const system = { user: "doppel-sys", pass: secret() };
  const security = `
accounts {
  AUTH { users: [ { user: ${auth.user}, password: "${auth.pass}" } ] }
  DOPPEL { jetstream: enabled, users: [ { user: ${node.user}, password: "${node.pass}" } ] }
  SYS { users: [ { user: ${system.user}, password: "${system.pass}" } ] }
}
system_account: SYS
authorization {
  auth_callout {
    issuer: ${issuerPublicKey}
    account: AUTH
    auth_users: [ ${auth.user}, ${node.user}, ${system.user} ]
  }
}
`;
  const tls = options.tls ? `tls { cert_file: "${options.tls.cert}", key_file: "${options.tls.key}" }\n` : "";
  const config = `
server_name: doppel-secured-${port}
listen: 127.0.0.1:${port}
http: 127.0.0.1:${httpPort}
log_file: "${join(dir, "nats.log")}"
jetstream {
  store_dir: "${join(dir, "js")}", max_memory_store: 64MB, max_file_store: 2GB
  ${options.syncAlways ? "sync_interval: always" : ""}
}
mqtt { listen: 127.0.0.1:${mqttPort} }
${tls}${options.open ? "" : security}`;
  const configFile = join(dir, "nats.conf");
  writeFileSync(configFile, config);
  const child: ChildProcess = spawn(BINARY, ["-c", configFile], { stdio: "ignore" });
  let exited = false;
  child.once("exit", () => {
    exited = true;
  });
  const monitorUrl = `http://127.0.0.1:${httpPort}`;
  await eventually(
    async () => {
      if (exited) throw new Error("nats-server exited");
      const response = await fetch(`${monitorUrl}/healthz?js-enabled-only=true`);
      return response.ok;
    },
    "the secured nats-server",
    60_000,
    100,
  );
  return {
    url: `${options.tls ? "tls" : "nats"}://127.0.0.1:${port}`,
    mqttUrl: `mqtt://127.0.0.1:${mqttPort}`,
    monitorUrl,
    issuerSeed,
    issuerPublicKey,
    node,
    auth,
    system,
    account: "DOPPEL",
    dir,
    async stop() {
      if (!exited) {
        const gone = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGTERM");
        await gone;
      }
      if (!process.env["DOPPEL_KEEP_SECURED_NATS"]) rmSync(dir, { recursive: true, force: true });
    },
  };
}
