/**
 * The tiny upstream app every data-plane target reaches: `GET /` answers 12 bytes (keep-alive),
 * and a WebSocket on any path echoes every message. Plain node:http plus `ws`, one process, as a
 * small session backend would be.
 *
 *   node upstream-app.js --port=P
 */
import * as http from 'node:http';
import { WebSocketServer } from 'ws';

const port = Number(/^--port=(\d+)$/.exec(process.argv[2] ?? '')?.[1] ?? 8080);
const BODY = Buffer.from('hello world\n');

const server = http.createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length });
  res.end(BODY);
});
server.keepAliveTimeout = 65_000;
const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => ws.terminate());
});
server.listen(port, '127.0.0.1', () => process.stdout.write(`upstream listening on ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
