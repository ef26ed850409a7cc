/**
 * The sidecar's admission policy over the relay core (common/src/relay): one upstream, the app
 * on 127.0.0.1. Per request: refused while a warm pool Pod is unassigned (503), the token gate
 * (401, never forwarded, no activity), then activity and accounting, then forward, or hold while
 * the app does not accept connections yet (504 after holdTimeoutMs, 503 when holdMaxQueued wait
 * or the sidecar is stopping). A 101 hands the pair to the WebSocket tracker. See
 * docs/adr/0005-sidecar-data-path.md.
 */
import { inboundIdentityLines } from '../../common/src/backend-identity';
import { forwardedHttps, tokenCookie } from '../../common/src/connection-token';
import { rewriteRequestHead } from '../../common/src/relay/http1';
import type { Decision, RelayPolicy, RequestView, Ticket, UpstreamAddress } from '../../common/src/relay/policy';
import { upstreamAddress } from '../../common/src/relay/policy';
import { Relay } from '../../common/src/relay/relay';
import type * as net from 'node:net';
import type { DataPathDeps } from './data-path';
import type { HeldEntry } from './hold-queue';
import { answers } from './responses';

export class SidecarPolicy implements RelayPolicy {
  private readonly upstream: UpstreamAddress;

  constructor(private readonly deps: DataPathDeps) {
    this.upstream = upstreamAddress(deps.upstreamHost, deps.upstreamPort);
  }

  admit(request: RequestView, ticket: Ticket): Decision | undefined {
    const { deps } = this;
    const { parsed } = request;
    const { access } = deps;
    // A warm pool Pod before its claim: nobody's backend yet, so nothing reaches the app.
    if (access.pending) return { kind: 'answer', answer: answers.unassigned() };
    // An assigned pool Pod tells the app whom it serves; copies a client sent never get through.
    const identity = access.identity;
    const identityDrop = identity === '' ? [] : inboundIdentityLines(parsed);
    let forward: Decision;
    const gate = access.gate;
    if (gate !== undefined) {
      const admission = gate.admit(parsed);
      if (!admission.ok) {
        deps.metrics.unauthorized(!request.upgrade);
        return { kind: 'answer', answer: answers.unauthorized() };
      }
      const forwarded = parsed.tokenHeaders ?? {};
      forward = {
        kind: 'forward',
        upstream: this.upstream,
        head: rewriteRequestHead(request.head, parsed, {
          target: admission.target,
          drop: identity === '' ? admission.drop : [...admission.drop, ...identityDrop],
          extra: admission.extra + identity,
          remote: request.remote,
        }),
        setCookie: admission.setCookie
          ? tokenCookie(admission.token, forwarded['x-forwarded-prefix'], forwardedHttps(forwarded['x-forwarded-proto']))
          : undefined,
      };
    } else {
      forward = {
        kind: 'forward',
        upstream: this.upstream,
        head: rewriteRequestHead(
          request.head,
          parsed,
          identity === '' ? { remote: request.remote } : { drop: identityDrop, extra: identity, remote: request.remote },
        ),
      };
    }
    if (!request.upgrade) {
      ticket.count();
      deps.activity.requestStarted();
    }
    if (deps.activity.ready) return forward;
    // The app does not accept connections yet: the request waits in the hold queue.
    if (deps.stopping()) return { kind: 'answer', answer: answers.stopping(), close: true };
    const held: HeldEntry = {
      forward: () => ticket.decide(forward),
      expire: () => ticket.decide({ kind: 'answer', answer: answers.holdTimeout(), close: true }),
      reject: () => ticket.decide({ kind: 'answer', answer: answers.stopping(), close: true }),
    };
    if (!deps.queue.add(held)) return { kind: 'answer', answer: answers.holdFull(), close: true };
    ticket.onAbandon(() => deps.queue.remove(held));
    return undefined;
  }

  finished(status: number, seconds: number, counted: boolean): void {
    if (!counted) return;
    this.deps.activity.requestEnded();
    this.deps.metrics.request(status, seconds);
  }

  tunnel(client: net.Socket, upstream: net.Socket): void {
    // Counted from here until the first close, error or end of either side (the tracker's rules).
    this.deps.tracker.track(client, upstream);
  }
}

/** The sidecar's data path: the relay core with the sidecar's policy, one app connection per client connection. */
export function createSidecarRelay(deps: DataPathDeps & { tickMs?: number }): Relay {
  return new Relay({ policy: new SidecarPolicy(deps), logger: deps.logger, tickMs: deps.tickMs });
}
