// The article's server.js, as published, but for the port (argv) and the
// startup line the benchmark reads. The stretch target for our server.
import { WebSocket, WebSocketServer } from 'ws';

const webSocketServer = new WebSocketServer({ host: '127.0.0.1', port: Number(process.argv[2] ?? 0) });

webSocketServer.on('listening', () => {
  console.log(`Listening on ws://127.0.0.1:${webSocketServer.address().port}`);
});

webSocketServer.on('connection', (webSocket) => {
  webSocket.onmessage = (message) => {
    webSocketServer.clients.forEach((client) => {
      if (client.readyState === WebSocket.OPEN) {
        client.send(message.data);
      }
    });
  };
});
