/**
 * Whom this sidecar's app serves and which connection token it takes. A backend's own Pod knows
 * from the start (the token hash in its environment); a warm pool Pod learns it once, at claim
 * time, from the operator's POST to /assign (common/src/pool-assign.ts), and until then
 * `pending` makes the data path refuse everything.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { identityHeaderLines, type BackendIdentity } from '../../common/src/backend-identity';
import { bearerToken, TokenGate, verifyTokenHash } from '../../common/src/connection-token';
import { errorMessage } from '../../common/src/errors';
import type { Logger } from '../../common/src/logger';
import { parseAssignment, sameAssignment, type Assignment } from '../../common/src/pool-assign';

const MAX_BODY_BYTES = 4096;

export class SidecarAccess {
  private assignment: Assignment | undefined;
  /** The app being told of an assignment (a pool's assignPath): the outcome, or why it failed. */
  private telling: { assignment: Assignment; failure: Promise<string | undefined> } | undefined;
  private tokenGate: TokenGate | undefined;
  private identityLines = '';

  /**
   * @param tokenSha256 the token hash a backend's own Pod starts with
   * @param assignSha256 set on a warm pool Pod: the hash of the secret /assign must present
   * @param tellApp set when the pool names an assignPath: tells the app its backend before the
   *   assignment takes effect (common/src/backend-identity.ts `tellApp`)
   */
  constructor(
    tokenSha256: string | undefined,
    private readonly assignSha256: string | undefined,
    private readonly logger: Logger,
    private readonly tellApp?: (id: BackendIdentity) => Promise<void>,
  ) {
    this.tokenGate = tokenSha256 ? new TokenGate(tokenSha256) : undefined;
  }

  /** A pool Pod not claimed yet: no request may reach the app. */
  get pending(): boolean {
    return this.assignSha256 !== undefined && this.assignment === undefined;
  }

  get gate(): TokenGate | undefined {
    return this.tokenGate;
  }

  /** Identity header lines to set on every request (empty until assigned: the entry point sets them). */
  get identity(): string {
    return this.identityLines;
  }

  get assigned(): BackendIdentity | undefined {
    const a = this.assignment;
    return a && { name: a.name, uid: a.uid, key: a.key };
  }

  /** POST /assign on the admin port. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const reply = (status: number, code: string, message: string): void => {
      res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
      res.end(`${JSON.stringify(status < 300 ? { assigned: this.assigned } : { error: { code, message } })}\n`);
    };
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST');
      return reply(405, 'method_not_allowed', 'POST an assignment');
    }
    if (this.assignSha256 === undefined) return reply(409, 'not_poolable', 'this sidecar is not a warm pool Pod');
    if (!verifyTokenHash(this.assignSha256, bearerToken(req.headers.authorization))) {
      return reply(401, 'unauthorized', 'the assign secret of this Pod is required');
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('end', () => {
      if (size > MAX_BODY_BYTES) return reply(413, 'too_large', `the body is limited to ${MAX_BODY_BYTES} bytes`);
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        return reply(400, 'invalid_json', 'the body is not JSON');
      }
      const parsed = parseAssignment(body);
      if (typeof parsed === 'string') return reply(400, 'invalid_assignment', parsed);
      void this.take(parsed).then(([status, code, message]) => reply(status, code, message));
    });
  };

  /** Takes an assignment, once the app has been told of it (when it is to be): status, code, message. */
  private async take(a: Assignment): Promise<[number, string, string]> {
    // A retried call is answered as the first was; a second backend never gets this Pod.
    const taken = (): [number, string, string] | undefined => {
      if (this.assignment === undefined) return undefined;
      if (sameAssignment(this.assignment, a)) return [200, '', ''];
      return [409, 'already_assigned', `this Pod serves backend ${this.assignment.name}`];
    };
    const before = taken();
    if (before) return before;
    if (this.tellApp) {
      if (this.telling && !sameAssignment(this.telling.assignment, a)) {
        return [409, 'already_assigned', `this Pod is being assigned to backend ${this.telling.assignment.name}`];
      }
      const telling = (this.telling ??= {
        assignment: a,
        failure: this.tellApp({ name: a.name, uid: a.uid, key: a.key }).then(() => undefined, errorMessage),
      });
      const failure = await telling.failure;
      if (this.telling === telling) this.telling = undefined;
      if (failure !== undefined) {
        // Unassigned still: the operator's retry tells the app again.
        this.logger.warn('the app did not take its assignment', { backend: a.name, error: failure });
        return [502, 'app_refused_assignment', failure];
      }
      const meanwhile = taken();
      if (meanwhile) return meanwhile;
    }
    this.assignment = a;
    this.tokenGate = a.tokenSha256 ? new TokenGate(a.tokenSha256) : undefined;
    this.identityLines = identityHeaderLines(a);
    this.logger.info('assigned to a backend', {
      backend: a.name,
      uid: a.uid,
      token: a.tokenSha256 !== undefined,
      appTold: !!this.tellApp,
    });
    return [200, '', ''];
  }
}
