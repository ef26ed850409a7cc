/**
 * What a relay user decides (the admission policy), and what the relay core does for it.
 *
 * The core (connection.ts) parses request heads, keeps HTTP/1.1 order, moves bytes, keeps
 * upstream connections alive and counts at the socket. For every request head it asks the policy
 * once: forward it (to which upstream, with which head) or answer it. The sidecar's policy checks
 * the token and holds until the app accepts; the entry point's resolves the backend, checks the
 * token, holds until Ready and picks the backend's sidecar, per request.
 */
import type * as net from 'node:net';
import type { Answer } from './answers';
import type { RequestHead } from './http1';

/** Where a request goes. `key` names the keep-alive pool (`host:port`). */
export interface UpstreamAddress {
  readonly host: string;
  readonly port: number;
  readonly key: string;
}

export const upstreamAddress = (host: string, port: number): UpstreamAddress => ({ host, port, key: `${host}:${port}` });

export type Decision =
  | {
      kind: 'forward';
      upstream: UpstreamAddress;
      /** The head to send, ending with the empty line (`rewriteRequestHead`). */
      head: string;
      /** A Set-Cookie field value to add to the response. */
      setCookie?: string;
    }
  | {
      kind: 'answer';
      answer: Answer;
      /** Close after the answer. Otherwise a request body is read and dropped (up to 1 MiB). */
      close?: boolean;
    };

/** A parsed request head, as the policy sees it. */
export interface RequestView {
  /** From the request line to the CRLF of the last field line (latin1). */
  readonly head: string;
  readonly parsed: RequestHead;
  /** The client's address (for X-Forwarded-For). */
  readonly remote: string | undefined;
  /** A WebSocket upgrade request. */
  readonly upgrade: boolean;
}

/** The policy's handle on one request while it decides. */
export interface Ticket {
  /** Counts this request (activity, durations) from now until its response ends. */
  count(): void;
  /** The decision, when `admit` returned undefined (held, or looked up asynchronously). */
  decide(decision: Decision): void;
  /** Called once if the client goes away before the decision (stop waiting, release a hold). */
  onAbandon(fn: () => void): void;
}

export interface RelayPolicy {
  /** Decides now, or returns undefined and calls `ticket.decide` later. */
  admit(request: RequestView, ticket: Ticket): Decision | undefined;
  /**
   * A request the policy admitted is over: its response's last byte went out, or either side went
   * away (499: the client before an answer; 502: the upstream never answered). `counted` says
   * whether `ticket.count()` was called; `seconds` is measured from then.
   */
  finished(status: number, seconds: number, counted: boolean): void;
  /** The upstream answered 101: the pair is a tunnel now, and the policy owns it. */
  tunnel(client: net.Socket, upstream: net.Socket): void;
  /**
   * The upstream refused the connection for a request without a body, nothing else in flight on
   * this client connection: the policy may route it again (its decision, later, through the
   * ticket), or return an answer. Without this hook the relay answers 502.
   */
  refused?(request: RequestView, ticket: Ticket, upstream: UpstreamAddress): Decision | undefined;
  /** The upstream could not be reached or failed before answering (metrics, route dropping). */
  upstreamFailed?(upstream: UpstreamAddress, error: NodeJS.ErrnoException | undefined, upgrade: boolean): void;
}
