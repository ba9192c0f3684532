#!/usr/bin/env node
// scripts/infra/cql-ping.mjs [host:port] — runs a real CQL query against Cassandra
// (`SELECT release_version FROM system.local`) and prints the version.
// Dependency-free: speaks the CQL native protocol v4 directly (STARTUP, QUERY), so it
// works on a fresh clone before `npm ci`. Exit 0 on success, 1 on any error/timeout.
import net from "node:net";

const [host, port] = (process.argv[2] || process.env.DOPPEL_CASSANDRA || "127.0.0.1:19042").split(":");
const OP = { ERROR: 0x00, STARTUP: 0x01, READY: 0x02, AUTHENTICATE: 0x03, QUERY: 0x07, RESULT: 0x08 };

function frame(stream, opcode, body) {
  const h = Buffer.alloc(9);
  h.writeUInt8(0x04, 0); // v4 request
  h.writeUInt8(0, 1); // flags
  h.writeInt16BE(stream, 2);
  h.writeUInt8(opcode, 4);
  h.writeInt32BE(body.length, 5);
  return Buffer.concat([h, body]);
}
const str = (s) => {
  const b = Buffer.from(s, "utf8");
  const l = Buffer.alloc(2);
  l.writeUInt16BE(b.length);
  return Buffer.concat([l, b]);
};
const longStr = (s) => {
  const b = Buffer.from(s, "utf8");
  const l = Buffer.alloc(4);
  l.writeInt32BE(b.length);
  return Buffer.concat([l, b]);
};

function startupBody() {
  const n = Buffer.alloc(2);
  n.writeUInt16BE(1);
  return Buffer.concat([n, str("CQL_VERSION"), str("3.0.0")]);
}
function queryBody(cql) {
  const tail = Buffer.alloc(3);
  tail.writeUInt16BE(0x0001, 0); // consistency ONE
  tail.writeUInt8(0, 2); // no flags
  return Buffer.concat([longStr(cql), tail]);
}

// Parses a RESULT/Rows body and returns the first row's first column as text.
function firstCell(body) {
  let o = 0;
  const i32 = () => {
    const v = body.readInt32BE(o);
    o += 4;
    return v;
  };
  const u16 = () => {
    const v = body.readUInt16BE(o);
    o += 2;
    return v;
  };
  const s = () => {
    const l = u16();
    const v = body.toString("utf8", o, o + l);
    o += l;
    return v;
  };
  const kind = i32();
  if (kind !== 2) throw new Error(`unexpected result kind ${kind}`);
  const flags = i32();
  const cols = i32();
  if (flags & 0x0002) {
    // paging state
    const l = i32();
    if (l > 0) o += l;
  }
  const global = flags & 0x0001;
  if (global) {
    s();
    s();
  }
  if (!(flags & 0x0004)) {
    for (let c = 0; c < cols; c++) {
      if (!global) {
        s();
        s();
      }
      s(); // column name
      const type = u16();
      if (type !== 0x000d && type !== 0x0001) throw new Error(`unexpected column type ${type}`);
    }
  }
  const rows = i32();
  if (rows < 1) throw new Error("no rows");
  const len = i32();
  return len < 0 ? null : body.toString("utf8", o, o + len);
}

const sock = net.connect({ host, port: Number(port) });
const timer = setTimeout(() => fail(new Error("timeout after 10s")), 10000);
function fail(err) {
  console.error(`cql-ping ${host}:${port}: ${err.message}`);
  sock.destroy();
  process.exit(1);
}
sock.on("error", fail);
sock.on("connect", () => sock.write(frame(0, OP.STARTUP, startupBody())));
let buf = Buffer.alloc(0);
sock.on("data", (d) => {
  buf = Buffer.concat([buf, d]);
  while (buf.length >= 9) {
    const len = buf.readInt32BE(5);
    if (buf.length < 9 + len) return;
    const opcode = buf.readUInt8(4);
    const body = buf.subarray(9, 9 + len);
    buf = buf.subarray(9 + len);
    try {
      if (opcode === OP.ERROR)
        throw new Error(
          `server error 0x${body.readInt32BE(0).toString(16)}: ${body.toString("utf8", 6, 6 + body.readUInt16BE(4))}`,
        );
      if (opcode === OP.AUTHENTICATE) throw new Error("server requires authentication");
      if (opcode === OP.READY) {
        sock.write(frame(1, OP.QUERY, queryBody("SELECT release_version FROM system.local")));
      } else if (opcode === OP.RESULT) {
        console.log(firstCell(body));
        clearTimeout(timer);
        sock.end();
        process.exit(0);
      }
    } catch (err) {
      fail(err);
    }
  }
});
