/**
 * The operator console on the HTTP listener: `GET /` is the console's page and `/assets/...` its
 * script and stylesheet (see console-assets.ts), with a content security policy that allows
 * nothing but this origin (the API and its WebSocket watch). When the console was not built, `/`
 * answers 404 problem details saying how to build it.
 */
import type { FastifyInstance, FastifyReply } from "fastify";
import { NotFound } from "../core/errors.ts";
import { type ConsoleAsset, loadConsoleAssets } from "./console-assets.ts";
import { PROBLEM_JSON, problemOf } from "./problems.ts";
import type { WebExtension } from "./server.ts";

const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

function send(reply: FastifyReply, asset: ConsoleAsset): FastifyReply {
  return reply
    .headers({ ...SECURITY_HEADERS, "cache-control": asset.cacheControl })
    .type(asset.contentType)
    .send(asset.body);
}

function notFound(reply: FastifyReply, message: string): FastifyReply {
  const problem = problemOf(new NotFound(message));
  return reply.code(problem.status).headers(problem.headers).type(PROBLEM_JSON).send(problem.body);
}

/** Serves the console at `/` (its files loaded once, from `assets` or the built dist/console). */
export function consoleExtension(
  assets: ReadonlyMap<string, ConsoleAsset> = loadConsoleAssets(),
): WebExtension {
  return (app: FastifyInstance) => {
    app.get("/", async (_request, reply) => {
      const page = assets.get("/");
      if (page) return send(reply, page);
      return notFound(
        reply,
        "the console is not built: run `npm run build` (npm start builds it on its own)",
      );
    });
    app.get("/assets/*", async (request, reply) => {
      const path = request.url.split("?")[0] ?? "";
      const asset = assets.get(path);
      return asset ? send(reply, asset) : notFound(reply, `no console asset ${path}`);
    });
  };
}
