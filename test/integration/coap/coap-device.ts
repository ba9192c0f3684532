/**
 * The CoAP tests' devices: `fixtures/coap-device.mjs` (node-coap's client) spawned as another
 * process, and raw datagrams sent from the test itself for what no well-behaved client sends.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createSocket, type Socket } from "node:dgram";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { generate, parse } from "coap-packet";

const SCRIPT = fileURLToPath(new URL("./fixtures/coap-device.mjs", import.meta.url));
const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const run = promisify(execFile);

/** One printed response or notification of the device process. */
export interface CoapLine {
  readonly code?: string;
  readonly payload?: unknown;
  readonly format?: string;
  readonly maxAge?: number;
  readonly observe?: number;
  readonly error?: string;
  readonly deregistered?: boolean;
}

/** One request from a device process; resolves with its response. */
export async function coapRequest(
  address: string,
  method: "GET" | "POST" | "PUT",
  path: string,
  options: { format?: "json" | "cbor" | "none"; payload?: unknown; kind?: "con" | "non" } = {},
): Promise<CoapLine> {
  const [host, port] = address.split(":") as [string, string];
  const payload = options.payload === undefined ? "" : JSON.stringify(options.payload);
  const { stdout } = await run(
    "node",
    [SCRIPT, "request", host, port, method, path, options.format ?? "json", payload, options.kind ?? "con"],
    { cwd: ROOT, timeout: 120_000 },
  );
  return JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}") as CoapLine;
}

/** A device process observing a resource: its notifications as they arrive. */
export interface CoapObserver {
  readonly lines: CoapLine[];
  close(): Promise<void>;
}

export function coapObserve(address: string, path: string, format: "json" | "cbor" = "json"): CoapObserver {
  const [host, port] = address.split(":") as [string, string];
  const child: ChildProcess = spawn("node", [SCRIPT, "observe", host, port, path, format], {
    cwd: ROOT,
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines: CoapLine[] = [];
  let buffered = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    buffered += chunk.toString("utf8");
    let at = buffered.indexOf("\n");
    while (at >= 0) {
      lines.push(JSON.parse(buffered.slice(0, at)) as CoapLine);
      buffered = buffered.slice(at + 1);
      at = buffered.indexOf("\n");
    }
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    lines,
    async close() {
      child.stdin?.end();
      await exited;
    },
  };
}

/** A raw UDP peer: sends datagrams and collects what comes back, by message id. */
export class RawPeer {
  readonly #socket: Socket;
  readonly received: Buffer[] = [];

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on("message", (datagram) => this.received.push(datagram));
  }

  static async open(): Promise<RawPeer> {
    const socket = createSocket("udp4");
    await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", () => resolve()));
    return new RawPeer(socket);
  }

  send(address: string, datagram: Buffer): void {
    const [host, port] = address.split(":") as [string, string];
    this.#socket.send(datagram, Number(port), host);
  }

  /** The datagrams received with message id `messageId`. */
  replies(messageId: number): Buffer[] {
    return this.received.filter((d) => d.length >= 4 && d.readUInt16BE(2) === messageId);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.#socket.close(() => resolve()));
  }
}

/** The response code of a datagram (`4.02`), its type (0 CON, 1 NON, 2 ACK, 3 RST) and payload text. */
export function readDatagram(datagram: Buffer): { code: string; type: number; payload: string } {
  const packet = parse(datagram);
  const type = packet.reset ? 3 : packet.ack ? 2 : packet.confirmable ? 0 : 1;
  return { code: packet.code, type, payload: packet.payload.toString("utf8") };
}

/** A confirmable request datagram (method `code`, default POST) with `options` and `payload`. */
export function packet(
  messageId: number,
  options: { name: string; value: Buffer }[],
  payload = Buffer.alloc(0),
  code = "0.02",
): Buffer {
  return generate({
    code,
    messageId,
    token: Buffer.from([messageId & 0xff, 7]),
    confirmable: true,
    options: options as never,
    payload,
  });
}

/** The Uri-Path options of `segments`. */
export function path(...segments: string[]): { name: string; value: Buffer }[] {
  return segments.map((s) => ({ name: "Uri-Path", value: Buffer.from(s) }));
}
