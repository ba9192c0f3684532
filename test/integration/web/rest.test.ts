import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RestNode, startRestNode } from "./harness.ts";

const ALL = ["read", "write", "command", "admin"] as const;

/** The problem details of an answer, checked for the RFC 9457 members and the Doppel code. */
function problem(answer: { status: number; headers: Headers; body: unknown }, status: number, code: string) {
  expect(answer.status).toBe(status);
  expect(answer.headers.get("content-type")).toMatch(/^application\/problem\+json/);
  const body = answer.body as Record<string, unknown>;
  expect(body).toMatchObject({ status, code, type: `urn:doppel:error:${code}` });
  expect(typeof body["title"]).toBe("string");
  expect(typeof body["detail"]).toBe("string");
  return body;
}

describe("REST API on a real node", () => {
  let rest: RestNode;
  let admin: string;

  beforeAll(async () => {
    rest = await startRestNode({
      keys: {
        admin: { scopes: [...ALL] },
        reader: { scopes: ["read"] },
        thermostats: { scopes: ["read", "write", "command"], types: ["thermostat"] },
        plantA: { scopes: ["read", "write", "command"], idPrefixes: ["plant-a-"] },
        limited: { scopes: ["read"], limits: { ratePerSecond: 0.001, burst: 1 } },
      },
    });
    admin = rest.keys["admin"] ?? "";
  });
  afterAll(() => rest.stop());

  it("lists types and describes one with the JSON Schema of each command", async () => {
    const list = await rest.call("GET", "/v1/types", { token: admin });
    expect(list.status).toBe(200);
    expect(list.body).toMatchObject({
      types: expect.arrayContaining([
        { name: "thermostat", commands: expect.arrayContaining(["setTarget"]) },
      ]),
    });
    const type = await rest.call("GET", "/v1/types/thermostat", { token: admin });
    expect(type.status).toBe(200);
    expect(type.body).toMatchObject({
      name: "thermostat",
      commandSchemas: {
        setTarget: {
          type: "object",
          properties: { celsius: { type: "number", minimum: 5, maximum: 35 } },
          required: ["celsius"],
        },
      },
    });
    problem(await rest.call("GET", "/v1/types/boiler", { token: admin }), 404, "NOT_FOUND");
  });

  it("invokes, reads with an ETag, and writes desired with If-Match", async () => {
    const invoked = await rest.call("POST", "/v1/twins/thermostat/rest-1/commands/setTarget", {
      token: admin,
      body: { celsius: 23 },
    });
    expect(invoked.status).toBe(200);
    const { version } = invoked.body as { version: number };
    expect(invoked.body).toMatchObject({ result: { setPoint: 23 } });
    expect(invoked.headers.get("etag")).toBe(`"${version}"`);

    const twin = await rest.call("GET", "/v1/twins/thermostat/rest-1", { token: admin });
    expect(twin.status).toBe(200);
    expect(twin.headers.get("etag")).toBe(`"${version}"`);
    expect(twin.body).toMatchObject({ type: "thermostat", id: "rest-1", version, state: { setPoint: 23 } });

    const stale = await rest.call("PUT", "/v1/twins/thermostat/rest-1/desired", {
      token: admin,
      body: { heating: true },
      headers: { "if-match": `"${version - 1}"` },
    });
    expect(problem(stale, 412, "VERSION_CONFLICT")["details"]).toEqual({
      expected: version - 1,
      actual: version,
    });

    const desired = await rest.call("PUT", "/v1/twins/thermostat/rest-1/desired", {
      token: admin,
      body: { heating: true },
      headers: { "if-match": `"${version}"` },
    });
    expect(desired.status).toBe(200);
    expect(desired.body).toMatchObject({ desired: { heating: true }, version: version + 1 });
    expect(desired.headers.get("etag")).toBe(`"${version + 1}"`);
  });

  it("queries with a filter and pages", async () => {
    for (const id of ["q-1", "q-2", "q-3"]) {
      const answer = await rest.call("POST", `/v1/twins/thermostat/${id}/commands/setTarget`, {
        token: admin,
        body: { celsius: 30 },
      });
      expect(answer.status).toBe(200);
    }
    const ids: string[] = [];
    let pageToken: string | undefined;
    do {
      const query = new URLSearchParams({ where: "state.setPoint == 30", limit: "2" });
      if (pageToken) query.set("pageToken", pageToken);
      const page = await rest.call("GET", `/v1/twins/thermostat?${query}`, { token: admin });
      expect(page.status).toBe(200);
      const body = page.body as { twins: { id: string }[]; nextPageToken?: string };
      ids.push(...body.twins.map((twin) => twin.id));
      pageToken = body.nextPageToken;
    } while (pageToken);
    expect(ids.sort()).toEqual(["q-1", "q-2", "q-3"]);
    problem(
      await rest.call("GET", "/v1/twins/thermostat?where=state.setPoint%20%3D%3D", { token: admin }),
      400,
      "INVALID_ARGUMENT",
    );
  });

  it("pages through history", async () => {
    const events: number[] = [];
    let from: number | undefined = 1;
    while (from !== undefined) {
      const page = await rest.call("GET", `/v1/twins/thermostat/rest-1/history?from=${from}&limit=1`, {
        token: admin,
      });
      expect(page.status).toBe(200);
      const body = page.body as { events: { version: number; principal?: string }[]; nextFrom?: number };
      events.push(...body.events.map((event) => event.version));
      for (const event of body.events) expect(event.principal).toMatch(/^service-key:/);
      from = body.nextFrom;
    }
    const twin = await rest.call("GET", "/v1/twins/thermostat/rest-1", { token: admin });
    const version = (twin.body as { version: number }).version;
    expect(events).toEqual(Array.from({ length: version }, (_, i) => i + 1));
  });

  it("reads the cluster (admin scope)", async () => {
    const cluster = await rest.call("GET", "/v1/cluster", { token: admin });
    expect(cluster.status).toBe(200);
    expect(cluster.body).toMatchObject({ self: rest.node.id, nodes: [{ id: rest.node.id }] });
    problem(await rest.call("GET", "/v1/cluster", { token: rest.keys["reader"] }), 403, "PERMISSION_DENIED");
  });

  it("authenticates and authorizes as gRPC does", async () => {
    const anonymous = await rest.call("GET", "/v1/twins/thermostat/rest-1");
    problem(anonymous, 401, "UNAUTHENTICATED");
    // RFC 9110: a 401 names the scheme it expects.
    expect(anonymous.headers.get("www-authenticate")).toBe('Bearer realm="doppel"');
    problem(
      await rest.call("GET", "/v1/twins/thermostat/rest-1", { token: "dpk_nope" }),
      401,
      "UNAUTHENTICATED",
    );
    problem(
      await rest.call("GET", "/v1/twins/thermostat/rest-1", { headers: { authorization: "Basic abc" } }),
      401,
      "UNAUTHENTICATED",
    );
    // Authentication comes before validation: a bad body from a stranger is still a 401.
    problem(
      await rest.call("PUT", "/v1/twins/thermostat/rest-1/desired", { raw: "[1,2]" }),
      401,
      "UNAUTHENTICATED",
    );
    const reader = rest.keys["reader"];
    expect((await rest.call("GET", "/v1/twins/thermostat/rest-1", { token: reader })).status).toBe(200);
    const denied = problem(
      await rest.call("POST", "/v1/twins/thermostat/rest-1/commands/setTarget", {
        token: reader,
        body: { celsius: 20 },
      }),
      403,
      "PERMISSION_DENIED",
    );
    expect(denied["details"]).toMatchObject({ scope: "command" });
    const thermostats = rest.keys["thermostats"];
    problem(await rest.call("GET", "/v1/twins/pump/p1", { token: thermostats }), 403, "PERMISSION_DENIED");
    problem(await rest.call("GET", "/v1/twins/pump", { token: thermostats }), 403, "PERMISSION_DENIED");
    const plantA = rest.keys["plantA"];
    problem(
      await rest.call("GET", "/v1/twins/thermostat/rest-1", { token: plantA }),
      403,
      "PERMISSION_DENIED",
    );
    problem(await rest.call("GET", "/v1/twins/thermostat/plant-a-1", { token: plantA }), 404, "NOT_FOUND");
  });

  it("answers over the rate limit with 429 and Retry-After", async () => {
    const limited = rest.keys["limited"];
    expect((await rest.call("GET", "/v1/types", { token: limited })).status).toBe(200);
    const refused = await rest.call("GET", "/v1/types", { token: limited });
    problem(refused, 429, "RESOURCE_EXHAUSTED");
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
  });

  it("answers bad input with problem details, never 500", async () => {
    const t = { token: admin };
    problem(await rest.call("GET", "/v1/twins/thermostat/missing", t), 404, "NOT_FOUND");
    problem(await rest.call("GET", "/v1/twins/1bad/x", t), 400, "INVALID_ARGUMENT");
    problem(await rest.call("GET", "/v1/twins/thermostat?limit=abc", t), 400, "INVALID_ARGUMENT");
    problem(await rest.call("GET", "/v1/nowhere", t), 404, "NOT_FOUND");
    const wrongMethod = await rest.call("DELETE", "/v1/twins/thermostat/rest-1", t);
    problem(wrongMethod, 405, "INVALID_ARGUMENT");
    expect(wrongMethod.headers.get("allow")).toBe("GET");
    // Larger than the HTTP parser takes (16 KiB of request line): refused before any route.
    problem(
      await rest.call("GET", `/v1/twins/thermostat?where=${"x".repeat(20_000)}`, t),
      431,
      "INVALID_ARGUMENT",
    );
    problem(
      await rest.call("PUT", "/v1/twins/thermostat/rest-1/desired", { ...t, raw: "{not json" }),
      400,
      "INVALID_ARGUMENT",
    );
    problem(
      await rest.call("PUT", "/v1/twins/thermostat/rest-1/desired", { ...t, raw: "[1]" }),
      400,
      "INVALID_ARGUMENT",
    );
    problem(
      await rest.call("PUT", "/v1/twins/thermostat/rest-1/desired", {
        ...t,
        body: { heating: true },
        headers: { "if-match": "W/1" },
      }),
      400,
      "INVALID_ARGUMENT",
    );
    problem(
      await rest.call("PUT", "/v1/twins/thermostat/rest-1/desired", {
        ...t,
        raw: "heating=true",
        headers: { "content-type": "application/x-www-form-urlencoded" },
      }),
      415,
      "INVALID_ARGUMENT",
    );
    problem(
      await rest.call("PUT", "/v1/twins/thermostat/rest-1/desired", {
        ...t,
        raw: JSON.stringify({ blob: "x".repeat(2 * 1024 * 1024) }),
      }),
      413,
      "INVALID_ARGUMENT",
    );
    problem(
      await rest.call("POST", "/v1/twins/thermostat/rest-1/commands/explode", { ...t, body: {} }),
      404,
      "NOT_FOUND",
    );
    problem(
      await rest.call("POST", "/v1/twins/thermostat/rest-1/commands/setTarget", {
        ...t,
        body: { celsius: 99 },
      }),
      400,
      "INVALID_ARGUMENT",
    );
  });

  it("serves its OpenAPI document without a key", async () => {
    const document = await rest.call("GET", "/v1/openapi.json");
    expect(document.status).toBe(200);
    expect(document.body).toMatchObject({
      openapi: "3.1.0",
      paths: { "/v1/twins/{type}/{id}": { get: {} } },
    });
  });
});
