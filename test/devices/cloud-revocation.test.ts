import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type CloudRevocation,
  decodeRevocation,
  encodeRevocation,
  laterRevocation,
  revocationSubject,
  revokesCredential,
} from "../../runtime/devices/auth/cloud-revocation.ts";
import { DeviceCredentials } from "../../runtime/devices/auth/device-credentials.ts";
import { revocationOf } from "../../runtime/devices/auth/revocation-publisher.ts";

const T1 = { type: "thermostat", id: "t1" };
const subject = revocationSubject(T1);
const bytes = (value: unknown) =>
  new TextEncoder().encode(typeof value === "string" ? value : JSON.stringify(value));

describe("cloud revocation records", () => {
  it("round-trip, on the device's own subject", () => {
    const record: CloudRevocation = {
      device: "thermostat/t1",
      revokedAt: "2026-12-03T10:00:00.000Z",
      reprovisionedAt: "2026-12-03T11:00:00.000Z",
    };
    expect(subject).toBe("doppel.revocations.thermostat.t1");
    expect(decodeRevocation(subject, encodeRevocation(record))).toEqual(record);
  });

  it("refuse, each with its reason, what is not a record of that subject's device", () => {
    const at = "2026-12-03T10:00:00.000Z";
    const cases: [unknown, RegExp][] = [
      ["not json", /not JSON/],
      [{ device: "thermostat/t1" }, /revokedAt/],
      [{ device: "thermostat/t1", revokedAt: "yesterday" }, /revokedAt: must be an ISO 8601 time/],
      [
        { device: "thermostat/t2", revokedAt: at },
        /of thermostat\/t2 came on subject doppel.revocations.thermostat.t1/,
      ],
      [{ device: "no-slash", revokedAt: at }, /is not type\/id/],
      [{ device: "thermostat/t1", revokedAt: at, extra: 1 }, /record/],
      [
        { device: "thermostat/t1", revokedAt: at, reprovisionedAt: at },
        /reprovisionedAt is not after revokedAt/,
      ],
      [`{"device":"thermostat/t1","revokedAt":"${at}","pad":"${"x".repeat(2000)}"}`, /at most 1024/],
    ];
    for (const [body, error] of cases) expect(() => decodeRevocation(subject, bytes(body))).toThrow(error);
  });

  it("refuse credentials created up to the revocation, not later ones", () => {
    const record = { device: "thermostat/t1", revokedAt: "2026-12-03T10:00:00.000Z" };
    expect(revokesCredential(record, "2026-12-03T09:59:59.999Z")).toBe(true);
    expect(revokesCredential(record, "2026-12-03T10:00:00.000Z")).toBe(true);
    expect(revokesCredential(record, "2026-12-03T10:00:00.001Z")).toBe(false);
    expect(revokesCredential(record, "garbage")).toBe(true);
  });

  it("keep the later revocation of a device, whatever order they come in", () => {
    const early = { device: "thermostat/t1", revokedAt: "2026-12-03T10:00:00.000Z" };
    const late = { device: "thermostat/t1", revokedAt: "2026-12-03T12:00:00.000Z" };
    expect(laterRevocation(undefined, early)).toBe(early);
    expect(laterRevocation(early, late)).toBe(late);
    expect(laterRevocation(late, early)).toBe(late);
  });
});

describe("what the cloud's file calls for", () => {
  let dir: string;
  let credentials: DeviceCredentials;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "doppel-cloud-revocation-"));
    credentials = new DeviceCredentials(join(dir, "device-credentials.json"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const entry = () => credentials.list()[0]!;

  it("nothing for an active device, the revocation once revoked, and it stays after re-provisioning", () => {
    credentials.provision(T1, new Date("2026-12-03T09:00:00.000Z"));
    expect(revocationOf(entry())).toBeUndefined();
    credentials.revoke(T1, new Date("2026-12-03T10:00:00.000Z"));
    expect(revocationOf(entry())).toEqual({ device: "thermostat/t1", revokedAt: "2026-12-03T10:00:00.000Z" });
    credentials.provision(T1, new Date("2026-12-03T11:00:00.000Z"));
    expect(entry().previousRevokedAt).toBe("2026-12-03T10:00:00.000Z");
    expect(revocationOf(entry())).toEqual({
      device: "thermostat/t1",
      revokedAt: "2026-12-03T10:00:00.000Z",
      reprovisionedAt: "2026-12-03T11:00:00.000Z",
    });
    credentials.revoke(T1, new Date("2026-12-03T12:00:00.000Z"));
    expect(revocationOf(entry())).toEqual({ device: "thermostat/t1", revokedAt: "2026-12-03T12:00:00.000Z" });
  });

  it("at an edge, a credential the cloud revoked is refused as revoked-in-cloud", () => {
    const file = join(dir, "edge.json");
    const own = new DeviceCredentials(file);
    const { password } = own.provision(T1, new Date("2026-12-03T09:00:00.000Z"));
    const revokedAt = { "thermostat/t1": "2026-12-03T10:00:00.000Z" } as Record<string, string>;
    const cloud = {
      revokes: (device: string, createdAt: string) =>
        revokedAt[device] !== undefined &&
        revokesCredential({ device, revokedAt: revokedAt[device] }, createdAt),
    };
    const edge = new DeviceCredentials(file, cloud);
    expect(edge.check("thermostat/t1", password)).toEqual({ ok: false, reason: "revoked-in-cloud" });
    expect(edge.check("thermostat/t1", "dpd_wrong")).toEqual({ ok: false, reason: "wrong-secret" });
    // Provisioned again at the edge after the cloud's revocation: the edge's own decision.
    own.revoke(T1, new Date("2026-12-03T10:30:00.000Z"));
    const again = own.provision(T1, new Date("2026-12-03T11:00:00.000Z"));
    expect(edge.check("thermostat/t1", again.password)).toEqual({ ok: true, ref: T1 });
  });
});
