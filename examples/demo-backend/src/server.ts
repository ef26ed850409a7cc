/**
 * The demo backend: a tiny real-time collaborative app, one process per session. Everyone
 * connected to the same backend shares one counter and one list of notes, kept in memory, so the
 * state lives exactly as long as the session's backend does.
 *
 * Protocol (JSON over WebSocket, any path):
 *   client → {"type":"increment"} | {"type":"note","text":"..."} | {"type":"echo", ...}
 *   server → {"type":"state","counter":n,"notes":[...],"clients":n} after every change, and
 *            {"type":"echo", ...} back to the sender only.
 *
 * Started in a warm pool whose `assignPath` is ASSIGN_PATH, it learns the backend it serves
 * ({"name", "uid", "key"}) from the sidecar before anyone connects: the moment to load that
 * session's document. HTTP GETs answer what it knows about itself, that backend included.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';

export interface DemoState {
  counter: number;
  notes: string[];
}

/** Where a warm pool's sidecar tells this app its backend (the pool's spec.assignPath). */
export const ASSIGN_PATH = '/spawner/assign';

const MAX_NOTES = 50;
const MAX_NOTE_LENGTH = 200;

export interface DemoServer {
  server: http.Server;
  port: number;
  close(): Promise<void>;
}

export async function startDemoServer(port: number, host = '0.0.0.0'): Promise<DemoServer> {
  const state: DemoState = { counter: 0, notes: [] };
  const startedAt = new Date().toISOString();
  let backend: { name?: unknown; uid?: unknown; key?: unknown; at: string } | undefined;
  const server = http.createServer((req, res) => {
    const reply = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'POST' && req.url === ASSIGN_PATH) {
      let text = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (text = (text + chunk).slice(0, 4096)));
      req.on('end', () => {
        try {
          const { name, uid, key } = JSON.parse(text) as Record<string, unknown>;
          backend = { name, uid, key, at: new Date().toISOString() };
          reply(200, { ok: true });
        } catch {
          reply(400, { error: 'the assignment is JSON' });
        }
      });
      return;
    }
    reply(200, { app: 'spawner-demo-backend', path: req.url, startedAt, pid: process.pid, counter: state.counter, backend });
  });
  const wss = new WebSocketServer({ server, maxPayload: 16 * 1024 });
  const broadcast = (): void => {
    const msg = JSON.stringify({ type: 'state', ...state, clients: wss.clients.size });
    for (const c of wss.clients) if (c.readyState === c.OPEN) c.send(msg);
  };
  wss.on('connection', (ws: WebSocket) => {
    broadcast();
    ws.on('message', (data) => {
      let msg: { type?: string; text?: unknown };
      try {
        msg = JSON.parse(String(data)) as { type?: string; text?: unknown };
      } catch {
        ws.send(JSON.stringify({ type: 'error', message: 'messages are JSON' }));
        return;
      }
      if (msg.type === 'increment') {
        state.counter++;
        broadcast();
      } else if (msg.type === 'note' && typeof msg.text === 'string') {
        state.notes = [...state.notes, msg.text.slice(0, MAX_NOTE_LENGTH)].slice(-MAX_NOTES);
        broadcast();
      } else if (msg.type === 'echo') {
        ws.send(JSON.stringify(msg));
      } else {
        ws.send(JSON.stringify({ type: 'error', message: `unknown message type ${String(msg.type)}` }));
      }
    });
    ws.on('close', broadcast);
  });
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close();
        server.close(() => resolve());
      }),
  };
}
