/**
 * nginx and HAProxy as the data plane's reference proxies, from generated configurations: one
 * worker/thread each (the sidecar is one Node.js thread), keep-alive connections to the upstream,
 * WebSocket upgrades passed through. Also nginx as a static upstream answering 12 bytes, the
 * "fast app" that shows each proxy's own ceiling when a Node upstream is not the bottleneck.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startChild, type Child } from './processes';

/** A proxy listening on `listen`, forwarding to 127.0.0.1:`upstream`. */
export interface Route {
  listen: number;
  upstream: number;
}

function nginxCommon(dir: string): string {
  for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, d), { recursive: true });
  return `worker_processes 1;
daemon off;
master_process on;
user root;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 8192; multi_accept on; }
`;
}

function nginxHttpCommon(dir: string): string {
  return `  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 65s;
`;
}

export function nginxProxyConfig(dir: string, routes: Route[]): string {
  const blocks = routes
    .map(
      (r, i) => `  upstream app${i} { server 127.0.0.1:${r.upstream}; keepalive 128; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:${r.listen} backlog=4096;
    location / {
      proxy_pass http://app${i};
      proxy_http_version 1.1;
      proxy_set_header Host $host;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_read_timeout 1h;
      proxy_buffering on;
    }
  }`,
    )
    .join('\n');
  return `${nginxCommon(dir)}http {
${nginxHttpCommon(dir)}  map $http_upgrade $connection_upgrade { default upgrade; '' ''; }
${blocks}
}
`;
}

export function nginxStaticConfig(dir: string, port: number): string {
  return `${nginxCommon(dir)}http {
${nginxHttpCommon(dir)}  server {
    listen 127.0.0.1:${port} backlog=4096;
    location / { default_type text/plain; return 200 "hello world\\n"; }
  }
}
`;
}

export function startNginx(name: string, dir: string, config: string): Child {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'nginx.conf');
  writeFileSync(path, config);
  return startChild(name, 'nginx', ['-p', dir, '-c', path]);
}

export function haproxyConfig(routes: Route[]): string {
  const blocks = routes
    .map(
      (r, i) => `frontend f${i}
  bind 127.0.0.1:${r.listen}
  default_backend b${i}
backend b${i}
  http-reuse always
  server app 127.0.0.1:${r.upstream} maxconn 1000
`,
    )
    .join('');
  return `global
  nbthread 1
  maxconn 8000
defaults
  mode http
  option http-keep-alive
  option forwardfor
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout tunnel 1h
  timeout http-keep-alive 65s
${blocks}`;
}

export function startHaproxy(name: string, dir: string, routes: Route[]): Child {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'haproxy.cfg');
  writeFileSync(path, haproxyConfig(routes));
  return startChild(name, 'haproxy', ['-f', path, '-db']);
}
