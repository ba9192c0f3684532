import { describe, expect, it } from "vitest";
import { PermissionDenied } from "../../runtime/core/errors.ts";
import {
  ANONYMOUS,
  authorize,
  isScope,
  mayTouch,
  type Principal,
  principalLabel,
} from "../../runtime/core/principal.ts";

const reader: Principal = { kind: "service-key", id: "k1", scopes: ["read"] };
const thermostats: Principal = {
  kind: "service-key",
  id: "k2",
  scopes: ["read", "command"],
  types: ["thermostat"],
  idPrefixes: ["plant-a-"],
};

describe("principal", () => {
  it("labels principals by kind and id", () => {
    expect(principalLabel(reader)).toBe("service-key:k1");
    expect(principalLabel({ kind: "device", id: "thermostat/t1", scopes: ["write"] })).toBe(
      "device:thermostat/t1",
    );
    expect(principalLabel(ANONYMOUS)).toBe("anonymous");
  });

  it("refuses a missing scope naming it", () => {
    expect(() => authorize(reader, "command", { type: "thermostat", id: "t1" })).toThrow(PermissionDenied);
    expect(() => authorize(reader, "command")).toThrow("service-key:k1 lacks the 'command' scope");
    try {
      authorize(reader, "admin");
    } catch (error) {
      expect((error as PermissionDenied).details).toMatchObject({ scope: "admin" });
    }
    expect(() => authorize(reader, "read", { type: "pump", id: "p1" })).not.toThrow();
  });

  it("applies type and id-prefix restrictions", () => {
    expect(() => authorize(thermostats, "command", { type: "thermostat", id: "plant-a-1" })).not.toThrow();
    expect(() => authorize(thermostats, "command", { type: "pump", id: "plant-a-1" })).toThrow(
      "may not touch twins of type 'pump'",
    );
    expect(() => authorize(thermostats, "read", { type: "thermostat", id: "plant-b-1" })).toThrow(
      "id prefix",
    );
    expect(() => authorize(thermostats, "read", { type: "thermostat" })).not.toThrow();
    expect(mayTouch({ ...reader, types: [] }, { type: "thermostat", id: "x" })).toBe(false);
  });

  it("anonymous may do everything; scope names are checked", () => {
    for (const scope of ["read", "write", "command", "admin"] as const) {
      expect(() => authorize(ANONYMOUS, scope, { type: "pump", id: "p" })).not.toThrow();
    }
    expect(isScope("write")).toBe(true);
    expect(isScope("root")).toBe(false);
  });
});
