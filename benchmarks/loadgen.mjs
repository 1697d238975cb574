// Load generator for `nox -s bench`, in Node `ws` so that it out-runs any of
// the Python servers it measures (it is pinned to its own core).
//
//   node loadgen.mjs '{"url": ..., "mode": "fanout" | "idle", ...}'
//
// fanout: `clients` receivers plus one publisher (also a receiver) connect
// (with `rooms` > 1: receivers spread over rooms /r0.., one publisher each);
// an optional `slow` client connects and then stops reading. The publisher
// keeps `window` messages in flight (sent but not yet echoed back to it).
// Each message carries a sequence number and a send time, so receivers count
// deliveries, latency, losses and reordering. Prints MEASURE_START and
// MEASURE_END around the measured window (the harness samples the server's
// CPU there), then one JSON line with the results.
//
// Receivers are raw TCP sockets with a minimal frame parser rather than `ws`
// clients: counting server frames (never masked) costs a fraction of a full
// client's per-message work, which keeps one Node core ahead of the servers.
//
// idle: opens `clients` connections, `concurrency` handshakes at a time,
// reports handshakes/s, holds them until told to stop (stdin closes).
import { WebSocket } from 'ws';
import net from 'node:net';
import tls from 'node:tls';
import { performance } from 'node:perf_hooks';

const cfg = JSON.parse(process.argv[2]);
const HEADER = 16;

// A raw receiver: HTTP upgrade by hand, then frames are parsed in place.
function connectRaw(url, onFrame) {
  const { hostname, port, pathname } = new URL(url);
  return new Promise((resolve, reject) => {
    // wss:// (bench --tls): a self-signed certificate made for the run.
    const secure = url.startsWith('wss:');
    const socket = secure
      ? tls.connect({ host: hostname, port: Number(port), rejectUnauthorized: false, noDelay: true })
      : net.connect({ host: hostname, port: Number(port), noDelay: true });
    let pending = null;
    let upgraded = false;
    socket.once('error', reject);
    socket.on(secure ? 'secureConnect' : 'connect', () => {
      socket.write(
        `GET ${pathname || '/'} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\n` +
        'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
        'Sec-WebSocket-Version: 13\r\n\r\n');
    });
    socket.on('data', (chunk) => {
      let buf = pending ? Buffer.concat([pending, chunk]) : chunk;
      pending = null;
      let offset = 0;
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) { pending = buf; return; }
        if (!buf.subarray(0, 13).toString().startsWith('HTTP/1.1 101')) {
          reject(new Error(buf.subarray(0, end).toString()));
          socket.destroy();
          return;
        }
        upgraded = true;
        offset = end + 4;
        resolve(socket);
      }
      while (buf.length - offset >= 2) {
        const opcode = buf[offset] & 0x0f;
        let length = buf[offset + 1] & 0x7f;
        let header = 2;
        if (length === 126) {
          if (buf.length - offset < 4) break;
          length = buf.readUInt16BE(offset + 2);
          header = 4;
        } else if (length === 127) {
          if (buf.length - offset < 10) break;
          length = Number(buf.readBigUInt64BE(offset + 2));
          header = 10;
        }
        if (buf.length - offset < header + length) break;
        onFrame(opcode, buf, offset + header, length);
        offset += header + length;
      }
      if (offset < buf.length) pending = buf.subarray(offset);
    });
  });
}

function connect(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      perMessageDeflate: false, maxPayload: 64 << 20, rejectUnauthorized: false,
    });
    ws.binaryType = 'nodebuffer';
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

async function connectMany(url, count, concurrency, onFrame = () => {}) {
  const sockets = new Array(count);
  let next = 0;
  let failures = 0;
  const latencies = [];
  const start = performance.now();
  async function worker() {
    while (next < count) {
      const i = next++;
      const began = performance.now();
      try {
        const target = typeof url === 'function' ? url(i) : url;
        sockets[i] = await connectRaw(target, (opcode, buf, at, length) => onFrame(i, opcode, buf, at, length));
        latencies.push(performance.now() - began);
      } catch (err) {
        failures++;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  const seconds = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return { sockets: sockets.filter(Boolean), seconds, failures, latencies };
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function fanout() {
  let measuring = false;
  let deliveries = 0;
  let lost = 0;
  let reordered = 0;
  const latencies = [];
  // With `rooms` > 1, receiver i joins room i % rooms (path /r<n>) and each
  // room has its own publisher. Indexes 0..rooms-1 are the publishers;
  // receivers follow.
  const rooms = cfg.rooms ?? 1;
  const roomUrl = (r) => (rooms === 1 ? cfg.url : `${cfg.url}/r${r}`);
  const roomOf = (index) => (index < rooms ? index : (index - rooms) % rooms);
  const expected = new Array(cfg.clients + rooms).fill(0);
  let closedEarly = 0;

  function receive(index, seq, sentAt) {
    if (seq < expected[index]) reordered++;
    else if (seq > expected[index]) lost += seq - expected[index];
    expected[index] = seq + 1;
    if (measuring) {
      deliveries++;
      if (index < rooms + 10) latencies.push(performance.now() - sentAt);
    }
  }

  const { sockets, seconds, failures } = await connectMany(
    (i) => roomUrl(i % rooms), cfg.clients, cfg.concurrency ?? 100,
    (i, opcode, buf, at) => {
      if (opcode === 0x2) receive(i + rooms, buf.readUInt32LE(at), buf.readDoubleLE(at + 8));
      else if (opcode === 0x8) closedEarly++;
    });
  const publishers = [];
  for (let r = 0; r < rooms; r++) {
    const publisher = await connect(roomUrl(r));
    publisher.on('close', () => { closedEarly++; });
    publisher.on('message', (data) => {
      receive(r, data.readUInt32LE(0), data.readDoubleLE(8));
      onEcho(r);
    });
    publishers.push(publisher);
  }
  let slow = null;
  let slowCloseCode = null;
  if (cfg.slow) {
    slow = await connectRaw(cfg.url, (opcode, buf, at, length) => {
      if (opcode === 0x8 && length >= 2) slowCloseCode = buf.readUInt16BE(at);
    });
    slow.pause(); // stops reading from the socket after the handshake
  }
  const payload = Buffer.alloc(Math.max(cfg.payload, HEADER), 0x61);
  const sent = new Array(rooms).fill(0);
  const echoed = new Array(rooms).fill(0);
  let publishing = true;
  function pumpRoom(r) {
    while (publishing && sent[r] - echoed[r] < cfg.window) {
      payload.writeUInt32LE(sent[r], 0);
      payload.writeDoubleLE(performance.now(), 8);
      publishers[r].send(payload);
      sent[r]++;
    }
  }
  function pump() {
    for (let r = 0; r < rooms; r++) pumpRoom(r);
  }
  function onEcho(r) {
    echoed[r]++;
    pumpRoom(r);
  }

  pump();
  await sleep(cfg.warmup * 1000);
  const cpuBefore = process.cpuUsage();
  console.log('MEASURE_START');
  measuring = true;
  const t0 = performance.now();
  await sleep(cfg.duration * 1000);
  measuring = false;
  const elapsed = (performance.now() - t0) / 1000;
  console.log('MEASURE_END');
  const cpu = process.cpuUsage(cpuBefore);
  publishing = false;
  // Drain: everything sent must reach every healthy receiver.
  const drainUntil = performance.now() + 10000;
  const behind = () => expected.some((e, index) => e < sent[roomOf(index)]);
  while (performance.now() < drainUntil && behind()) await sleep(20);
  const missing = expected.reduce((total, e, index) => total + (sent[roomOf(index)] - e), 0);
  let slowEnded = false;
  if (slow) {
    // Read what the server left for the stuck client: did it get a close frame?
    slow.on('close', () => { slowEnded = true; });
    slow.resume();
    const until = performance.now() + 15000;
    while (performance.now() < until && slowCloseCode === null && !slowEnded) await sleep(20);
  }
  latencies.sort((a, b) => a - b);
  const result = {
    handshakes_per_s: (cfg.clients / seconds),
    connect_failures: failures,
    deliveries,
    seconds: elapsed,
    p50_ms: percentile(latencies, 50),
    p99_ms: percentile(latencies, 99),
    lost: lost + missing,
    reordered,
    closed_early: closedEarly,
    loadgen_cpu_s: (cpu.user + cpu.system) / 1e6,
    sent: sent.reduce((a, b) => a + b, 0),
    slow_close_code: slowCloseCode,
  };
  console.log(JSON.stringify(result));
  for (const publisher of publishers) publisher.terminate();
  for (const socket of [...sockets, ...(slow ? [slow] : [])]) socket.destroy();
}

async function idle() {
  console.log('MEASURE_START');
  const { sockets, seconds, failures, latencies } = await connectMany(cfg.url, cfg.clients, cfg.concurrency ?? 200);
  console.log('CONNECTED');
  console.log(JSON.stringify({
    handshakes_per_s: sockets.length / seconds,
    connect_failures: failures,
    open: sockets.length,
    connect_p50_ms: percentile(latencies, 50),
    connect_p99_ms: percentile(latencies, 99),
  }));
  // Hold until the harness closes our stdin.
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on('end', resolve));
  for (const socket of sockets) socket.destroy();
}

await (cfg.mode === 'idle' ? idle() : fanout());
process.exit(0);
