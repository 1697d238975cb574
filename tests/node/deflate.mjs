// Node ws with permessage-deflate (its default) against our server: one client
// sends N chat messages, each after the echo of the one before; at N/2 a second
// client joins. Each must read exactly what was broadcast after it joined.
// Prints one JSON line: what was negotiated, and whether every frame matched.
import { WebSocket } from 'ws';

const url = process.argv[2];
const count = Number(process.argv[3] ?? 200);
const words = 'the of and to in is that it for was on are as with his they at be this from have or by one had not but what all were when we there can an your which their said'.split(' ');
let seed = 7;
const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const messages = Array.from({ length: count }, (_, n) =>
  JSON.stringify({ type: 'chat', n, text: Array.from({ length: 12 + Math.floor(random() * 20) },
    () => words[Math.floor(random() * words.length)]).join(' ') }));

const opened = (ws) => new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); });
const sender = new WebSocket(url, { perMessageDeflate: true });
await opened(sender);
const got = { sender: [], joiner: [] };
let joiner = null;
let next = 0;
const done = new Promise((resolve) => {
  const check = () => {
    if (got.sender.length === count && got.joiner.length === count - Math.floor(count / 2)) resolve();
  };
  sender.on('message', async (data) => {
    got.sender.push(data.toString());
    if (got.sender.length === Math.floor(count / 2)) {
      joiner = new WebSocket(url, { perMessageDeflate: true });
      joiner.on('message', (d) => { got.joiner.push(d.toString()); check(); });
      await opened(joiner);
    }
    check();
    if (next < count) sender.send(messages[next++]);
  });
  sender.send(messages[next++]);
});
await done;
const same = (a, b) => a.length === b.length && a.every((m, i) => m === b[i]);
console.log(JSON.stringify({
  sender: sender.extensions,  // the server's Sec-WebSocket-Extensions answer
  joiner: joiner.extensions,
  senderOk: same(got.sender, messages),
  joinerOk: same(got.joiner, messages.slice(Math.floor(count / 2))),
}));
sender.close();
joiner.close();
