/**
 * The demo page (local/demo/: plain HTML, CSS and JS, no build step), served by local mode at
 * /demo/ on the API's port, so the page calls the API on its own origin. Only the files of that
 * directory are served, by exact name; anything else falls through to the API.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join } from 'node:path';
import { projectRoot } from '../../common/src/paths';

export const DEMO_PATH = '/demo/';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/**
 * The page talks to the API on its own origin and to backends through the entry point, over
 * WebSocket (another port, so another origin): nothing else is allowed.
 */
const HEADERS = {
  'cache-control': 'no-cache',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'content-security-policy':
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
};

export function demoDirectory(): string {
  return join(projectRoot(), 'local', 'demo');
}

/** Returns a handler that answers demo requests and returns false for everything else. */
export function demoSite(dir = demoDirectory()): (req: IncomingMessage, res: ServerResponse) => boolean {
  // Read once: the page is a handful of small files, and a fixed set cannot be tricked into
  // serving anything outside the directory.
  const files = new Map<string, { type: string; body: Buffer }>();
  for (const name of readdirSync(dir)) {
    const type = TYPES[extname(name)];
    if (type) files.set(name, { type, body: readFileSync(join(dir, name)) });
  }
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/' || path === '/demo') {
      res.writeHead(302, { location: DEMO_PATH, 'cache-control': 'no-cache' });
      res.end();
      return true;
    }
    if (!path.startsWith(DEMO_PATH)) return false;
    const name = path.slice(DEMO_PATH.length) || 'index.html';
    const file = files.get(name);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
      res.end('method not allowed\n');
      return true;
    }
    if (!file) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', ...HEADERS });
      res.end('not found\n');
      return true;
    }
    res.writeHead(200, { 'content-type': file.type, 'content-length': file.body.length, ...HEADERS });
    res.end(req.method === 'HEAD' ? undefined : file.body);
    return true;
  };
}
