/**
 * Requests whose bytes do not decode. grpc-js answers a request deserializer that throws with
 * `INTERNAL` ("Error deserializing request") before any handler runs; but garbage bytes, a
 * truncated message, or a `Struct` nested past protobuf's recursion limit (100 levels, as protoc)
 * are the caller's fault. So the gateway's deserializers never throw: they hand the handler an
 * {@link UndecodableRequest}, and {@link refuseUndecodable} answers it with `INVALID_ARGUMENT`
 * (and `doppel-error-code`) before the handler sees it.
 */
import type * as grpc from "@grpc/grpc-js";
import { InvalidArgument } from "../core/errors.ts";
import type { Logger } from "../observability/logger.ts";
import { failure } from "./status.ts";

/** What a request decoded to when its bytes are not a valid message of its type. */
export class UndecodableRequest {
  constructor(readonly error: InvalidArgument) {}
}

type Methods = Record<string, grpc.MethodDefinition<unknown, unknown>>;

/** `service` with deserializers that return an {@link UndecodableRequest} instead of throwing. */
export function tolerantDecoding<S extends object>(service: S): S {
  const methods = service as unknown as Methods;
  return Object.fromEntries(
    Object.entries(methods).map(([name, method]) => {
      const type = (method as { requestType?: { type?: { name?: string } } }).requestType?.type?.name;
      const what = type ? `doppel.v1.${type}` : `${name} request`;
      const requestDeserialize = (bytes: Buffer): unknown => {
        try {
          return method.requestDeserialize(bytes);
        } catch (error) {
          return new UndecodableRequest(
            new InvalidArgument(`request is not a valid ${what} message: ${(error as Error).message}`),
          );
        }
      };
      return [name, { ...method, requestDeserialize }];
    }),
  ) as S;
}

type AnyCall = grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>;

/**
 * Wraps each handler of `handlers` (unary or server-streaming, as `service` says) so that an
 * {@link UndecodableRequest} is answered with `INVALID_ARGUMENT` and the handler never runs.
 */
export function refuseUndecodable<H extends object>(
  handlers: H,
  service: object,
  logger: Logger,
  rejected?: (code: string) => void,
): H {
  const methods = service as Methods;
  const wrapped: Record<string, unknown> = {};
  for (const [name, handler] of Object.entries(handlers as Record<string, (...args: never[]) => void>)) {
    const method = methods[name];
    const path = method?.path ?? name;
    if (method?.responseStream) {
      wrapped[name] = (call: grpc.ServerWritableStream<unknown, unknown>) => {
        const request: unknown = call.request;
        if (!(request instanceof UndecodableRequest)) return handler(call as never);
        rejected?.(request.error.code);
        call.emit("error", failure(logger, path, request.error));
      };
    } else {
      wrapped[name] = (call: AnyCall, callback: grpc.sendUnaryData<unknown>) => {
        const request: unknown = call.request;
        if (!(request instanceof UndecodableRequest)) return handler(call as never, callback as never);
        rejected?.(request.error.code);
        callback(failure(logger, path, request.error));
      };
    }
  }
  return wrapped as H;
}
