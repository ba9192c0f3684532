/**
 * The OpenAPI 3.1 document of the REST API, generated from the routes' zod schemas (zod's own
 * `z.toJSONSchema`, draft 2020-12 — the dialect of OpenAPI 3.1 — so nothing is translated or
 * written twice): path and query parameters, request headers, bodies (input side of the
 * schemas), responses (output side) and the problem details of the errors each route may answer.
 */
import { z } from "zod";
import type { JsonObject } from "../core/json.ts";
import { PROBLEM_JSON } from "./problems.ts";
import { problemSchema } from "./resources.ts";
import type { Route } from "./route.ts";

/** What every authenticated route may answer besides its own problems. */
const COMMON_PROBLEMS = [400, 401, 429, 431, 500, 503];
const REASONS: Record<number, string> = {
  400: "invalid input (INVALID_ARGUMENT)",
  401: "no credential, or an unknown or revoked one (UNAUTHENTICATED)",
  403: "the key lacks the scope, or may not touch this type or id (PERMISSION_DENIED)",
  404: "no such twin, type, command or route (NOT_FOUND)",
  409: "refused by the twin's state or a business rule (FAILED_PRECONDITION, CALL_CYCLE, QUARANTINED)",
  412: "If-Match named another version than the twin's (VERSION_CONFLICT)",
  413: "the body is larger than the node accepts (INVALID_ARGUMENT)",
  415: "the body is not JSON (INVALID_ARGUMENT)",
  431: "the request line or headers are larger than the node accepts (INVALID_ARGUMENT)",
  429: "over the key's rate limit or the node's admission bound (RESOURCE_EXHAUSTED; see Retry-After), or the key's twin quota used up (QUOTA_EXCEEDED)",
  500: "a twin's handler failed or an internal error (HANDLER_FAILED, INTERNAL)",
  503: "a dependency is unavailable; see Retry-After (UNAVAILABLE)",
  504: "the deadline passed (DEADLINE_EXCEEDED)",
};

/** A zod schema as an OpenAPI 3.1 schema object (without `$schema`). */
export function jsonSchemaOf(schema: z.ZodType, io: "input" | "output"): JsonObject {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, {
    io,
    target: "draft-2020-12",
    unrepresentable: "any",
  }) as Record<string, unknown>;
  return rest as JsonObject;
}

function parameters(schema: z.ZodType | undefined, where: "path" | "query" | "header"): JsonObject[] {
  if (schema === undefined) return [];
  const object = jsonSchemaOf(schema, "input") as {
    properties?: Record<string, JsonObject>;
    required?: string[];
  };
  return Object.entries(object.properties ?? {}).map(([name, property]) => {
    const { description, ...rest } = property as { description?: string } & JsonObject;
    return {
      name,
      in: where,
      required: where === "path" || (object.required ?? []).includes(name),
      ...(description === undefined ? {} : { description }),
      schema: rest,
      ...(where === "query" && (rest as { anyOf?: unknown }).anyOf !== undefined ? { explode: true } : {}),
    };
  });
}

function operationOf(route: Route): JsonObject {
  const problemStatuses = [
    ...new Set([...(route.authenticated === false ? [431, 500] : COMMON_PROBLEMS), ...route.problems]),
  ].sort();
  const responses: Record<string, JsonObject> = {
    [String(route.response.status)]: {
      description: route.response.description,
      ...(route.response.headers
        ? {
            headers: Object.fromEntries(
              Object.entries(route.response.headers).map(([name, header]) => [
                name,
                { description: header.description, schema: jsonSchemaOf(header.schema, "output") },
              ]),
            ),
          }
        : {}),
      content: { "application/json": { schema: jsonSchemaOf(route.response.schema, "output") } },
    },
  };
  for (const status of problemStatuses) {
    responses[String(status)] = {
      description: REASONS[status] ?? "problem",
      content: { [PROBLEM_JSON]: { schema: { $ref: "#/components/schemas/Problem" } } },
    };
  }
  const body = route.body;
  return {
    operationId: route.operationId,
    summary: route.summary,
    tags: [route.tag],
    ...(route.authenticated === false ? { security: [] } : {}),
    ...(route.credential === "device" ? { security: [{ deviceCredential: [] }] } : {}),
    parameters: [
      ...parameters(route.params, "path"),
      ...parameters(route.query, "query"),
      ...parameters(route.headers, "header"),
    ],
    ...(body === undefined
      ? {}
      : {
          requestBody: {
            required: !body.safeParse(undefined).success,
            content: Object.fromEntries(
              (route.bodyTypes ?? ["application/json"]).map((type) => [
                type,
                { schema: jsonSchemaOf(body, "input") },
              ]),
            ),
          },
        }),
    responses,
  };
}

/** Extra paths documented beside the routes (the WebSocket watch, the device ingress). */
export type ExtraPaths = Readonly<Record<string, JsonObject>>;

/** The OpenAPI 3.1 document of `routes`. */
export function openApiDocument(
  routes: readonly Route[],
  version: string,
  extra: ExtraPaths = {},
): JsonObject {
  const paths: Record<string, Record<string, JsonObject>> = {};
  for (const route of routes) {
    paths[route.path] ??= {};
    (paths[route.path] as Record<string, JsonObject>)[route.method.toLowerCase()] = operationOf(route);
  }
  for (const [path, item] of Object.entries(extra)) paths[path] = { ...paths[path], ...(item as object) };
  return {
    openapi: "3.1.0",
    info: {
      title: "Doppel REST API",
      version,
      description:
        "Twins, types and the cluster over HTTP: the operations of the gRPC TwinService, with the same " +
        "API keys, scopes and stable error codes (errors are RFC 9457 problem details).",
    },
    jsonSchemaDialect: "https://json-schema.org/draft/2020-12/schema",
    paths,
    components: {
      schemas: { Problem: jsonSchemaOf(problemSchema, "output") },
      securitySchemes: {
        apiKey: {
          type: "http",
          scheme: "bearer",
          description: "an API key `dpk_...` (doppel keys create); nodes without keys need none",
        },
        deviceCredential: {
          type: "http",
          scheme: "basic",
          description:
            "a device's own credential (doppel devices provision): user `type/id`, its password; the device routes only",
        },
      },
    },
    security: [{ apiKey: [] }],
  };
}
