/**
 * Without API tokens, whoever can call local mode's API can run commands on this machine (a
 * container's `command` is honoured). Binding to loopback keeps other machines out; the Host check
 * keeps out web pages that rebind their own domain name to 127.0.0.1 (DNS rebinding), which would
 * otherwise be same-origin with the API. So, in that mode, only requests addressed to a loopback
 * name or to an IP address are answered, and listening beyond loopback needs tokens.
 */
import { isIP } from 'node:net';

export function isLoopbackAddress(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** Whether a Host header names this machine the way a person types it: loopback name or IP literal. */
export function isLocalHostHeader(header: string | undefined): boolean {
  if (!header) return false;
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(:\d{1,5})?$/.exec(header.trim());
  if (!m) return false;
  const name = m[1].replace(/^\[|\]$/g, '').toLowerCase();
  return name === 'localhost' || name.endsWith('.localhost') || isIP(name) !== 0;
}

export const FORBIDDEN_HOST_BODY = (host: string | undefined): string =>
  JSON.stringify({
    error: {
      code: 'forbidden_host',
      message: `local mode without API tokens only answers requests for localhost or an IP address, not Host "${host ?? ''}"; start it with --tokens to allow other names`,
    },
  });
