/**
 * `doppel devices provision|list|revoke`: device credentials for the NATS auth callout
 * (docs/security.md). They edit the node's credentials file directly — the path from
 * `--credentials-file`, else the configuration's `nats.deviceAuth.credentialsFile`, else
 * `<dataDir>/device-credentials.json` — and running nodes pick the change up (a revoked device
 * is disconnected within `nats.deviceAuth.revocationPoll`). The secret is printed once; only its
 * hash is stored.
 */
import { parseRef } from "../core/ids.ts";
import { DeviceCredentials } from "../devices/auth/device-credentials.ts";
import { deviceCredentialsPath } from "../node/device-settings.ts";
import { compileConfig } from "../node/options.ts";
import { table } from "./format.ts";
import { buildConfig } from "./start-config.ts";

export interface DeviceFlags {
  readonly credentialsFile?: string;
  readonly config?: string;
  readonly data?: string;
  readonly json?: boolean;
}

function open(flags: DeviceFlags): DeviceCredentials {
  if (flags.credentialsFile) return new DeviceCredentials(flags.credentialsFile);
  const config = compileConfig(
    buildConfig(
      { ...(flags.config ? { config: flags.config } : {}), ...(flags.data ? { data: flags.data } : {}) },
      process.env,
    ),
  );
  return new DeviceCredentials(deviceCredentialsPath(config));
}

/** Issues a credential for `TYPE/ID` and prints it once. */
export function provision(target: string, flags: DeviceFlags, out: (line: string) => void): void {
  const credentials = open(flags);
  const issued = credentials.provision(parseRef(target));
  if (flags.json) {
    out(
      JSON.stringify({
        device: issued.user,
        user: issued.user,
        password: issued.password,
        file: credentials.path,
      }),
    );
    return;
  }
  out(`device    ${issued.user}`);
  out(`user      ${issued.user}`);
  out(`password  ${issued.password}`);
  out("This password is shown once; only its hash is kept. NATS: user/password; MQTT: username/password.");
}

/** Lists devices with a credential (active or revoked). */
export function list(flags: DeviceFlags, out: (line: string) => void): void {
  const records = open(flags).list();
  if (flags.json) {
    for (const record of records) {
      out(
        JSON.stringify({
          device: record.device,
          createdAt: record.createdAt,
          revokedAt: record.revokedAt ?? null,
        }),
      );
    }
    return;
  }
  out(
    table(
      ["DEVICE", "CREATED", "STATUS"],
      records.map((r) => [r.device, r.createdAt, r.revokedAt ? `revoked ${r.revokedAt}` : "active"]),
    ),
  );
}

/** Revokes `TYPE/ID`'s credential. */
export function revoke(target: string, flags: DeviceFlags, out: (line: string) => void): void {
  const ref = parseRef(target);
  const changed = open(flags).revoke(ref);
  const device = `${ref.type}/${ref.id}`;
  if (flags.json) out(JSON.stringify({ device, revoked: true, alreadyRevoked: !changed }));
  else out(changed ? `revoked ${device}` : `${device} was already revoked`);
}
