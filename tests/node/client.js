// The article's client.js, unchanged but for the URL, which comes from argv.
// It sends one message and closes at once, so the server must flush the echo
// before it answers the close (RFC 6455 §5.5.1), as Node's own ws server does.
import { WebSocket } from 'ws';

const webSocket = new WebSocket(process.argv[2] ?? 'ws://localhost:8080');

function handleOpen() {
  console.log('Connection opened');

  const message = 'Hello, WebSocket!';

  console.log(`Client sends: ${message}`);
  webSocket.send(message);
  webSocket.close();
}

function handleMessage(event) {
  console.log(`Server sent:  ${event.data}`);
}

function handleError(event) {
  console.error(`Connection error: ${event.message}`);
}

function handleClose() {
  console.log('Connection closed');
}

webSocket.onopen    = handleOpen;
webSocket.onmessage = handleMessage;
webSocket.onerror   = handleError;
webSocket.onclose   = handleClose;
