/** Command-line flags of the node agent (`--name=value` or `--name value`; `--no-name` for false). */
import { join } from 'node:path';
import { LOG_LEVELS, type LogLevel } from '../../common/src/logger';
import { IP_REUSE_MODES, type IpReuse } from './network';

export interface AgentConfig {
  kubeconfig?: string;
  stateDir: string;
  nodeName: string;
  bridge: string;
  podCidr: string;
  hostIp: string;
  /** Where pods reach the API server (KUBERNETES_SERVICE_HOST/PORT). */
  apiHost: string;
  apiPort?: number;
  images: string;
  /** Port of the agent's HTTP endpoint on 127.0.0.1 (0: any free port). */
  port: number;
  /** Upper bound on a pod's termination grace period, so deletions stay quick in tests. */
  maxGraceSeconds: number;
  maxRestartBackoffMs: number;
  /** Status changes within this window go out as one write. */
  statusDebounceMs: number;
  /** Enforce resources.limits.memory with a memory cgroup (and so report OOMKilled). */
  memoryLimits: boolean;
  /** Niceness of pod processes (0 to disable). */
  podNice: number;
  /** Network namespaces kept ready for new pods. */
  netnsPool: number;
  /** How a freed Pod IP is handed out again. */
  ipReuse: IpReuse;
  cgroupName: string;
  logLevel: LogLevel;
  capacity: { cpu: string; memory: string; pods: string };
}

const HELP = `usage: node dist/e2e/node-agent/main.js [flags]
  --kubeconfig PATH         admin kubeconfig (default: $KUBECONFIG)
  --state-dir DIR           pod logs and volumes under DIR/pods, agent.json in DIR (default /tmp/spawner-e2e)
  --node-name NAME          (default spawner-e2e-node)
  --bridge NAME             host bridge (default spawner-br0)
  --pod-cidr CIDR           (default 10.88.0.0/16)
  --host-ip IP              the bridge's address and the node's InternalIP (default 10.88.0.1)
  --api-host HOST, --api-port PORT   the API server as pods reach it (default host-ip and the kubeconfig's port)
  --images PATH             image catalog, re-read when it changes (default <repo>/e2e/images.json)
  --port N                  agent HTTP endpoint on 127.0.0.1 (default 0: any free port)
  --max-grace-seconds N     cap on termination grace periods (default 5)
  --max-restart-backoff-ms N  cap on container restart back-off (default 10000)
  --status-debounce-ms N    (default 50)
  --no-memory-limits        do not enforce memory limits with cgroups
  --pod-nice N              niceness of pod processes, so the control plane and the agent keep
                            their CPU share as on a real cluster's separate nodes (default 10; 0: off)
  --netns-pool N            network namespaces kept ready for new pods (default 256, ~130 KB each)
  --ip-reuse MODE           round-robin (default: a freed Pod IP is reused as late as possible) or
                            immediate (the next Pod gets it at once, to provoke IP reuse); also
                            SPAWNER_AGENT_IP_REUSE, and PUT /network/ip-reuse at run time
  --log-level LEVEL         debug|info|warn|error (default info)`;

export function parseArgs(argv: string[], root: string, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') {
      console.log(HELP);
      process.exit(0);
    }
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}\n${HELP}`);
    const eq = arg.indexOf('=');
    if (eq > 0) flags.set(arg.slice(2, eq), arg.slice(eq + 1));
    else if (arg.startsWith('--no-')) flags.set(arg.slice(5), 'false');
    else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) flags.set(arg.slice(2), argv[++i]);
    else flags.set(arg.slice(2), 'true');
  }
  const known = new Set([
    'kubeconfig',
    'state-dir',
    'node-name',
    'bridge',
    'pod-cidr',
    'host-ip',
    'api-host',
    'api-port',
    'images',
    'port',
    'max-grace-seconds',
    'max-restart-backoff-ms',
    'status-debounce-ms',
    'memory-limits',
    'pod-nice',
    'netns-pool',
    'ip-reuse',
    'log-level',
  ]);
  for (const k of flags.keys()) if (!known.has(k)) throw new Error(`unknown flag --${k}\n${HELP}`);
  const str = (k: string, d: string): string => flags.get(k) ?? d;
  const num = (k: string, d: number): number => {
    const v = Number(flags.get(k) ?? d);
    if (!Number.isFinite(v) || v < 0) throw new Error(`--${k} must be a non-negative number`);
    return v;
  };
  const logLevel = str('log-level', env.LOG_LEVEL ?? 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) throw new Error(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  const hostIp = str('host-ip', '10.88.0.1');
  const ipReuse = str('ip-reuse', env.SPAWNER_AGENT_IP_REUSE || 'round-robin') as IpReuse;
  if (!IP_REUSE_MODES.includes(ipReuse)) throw new Error(`--ip-reuse must be one of ${IP_REUSE_MODES.join(', ')}`);
  return {
    kubeconfig: flags.get('kubeconfig') ?? env.KUBECONFIG,
    stateDir: str('state-dir', env.SPAWNER_E2E_DIR ?? '/tmp/spawner-e2e'),
    nodeName: str('node-name', 'spawner-e2e-node'),
    bridge: str('bridge', 'spawner-br0'),
    podCidr: str('pod-cidr', '10.88.0.0/16'),
    hostIp,
    apiHost: str('api-host', hostIp),
    apiPort: flags.has('api-port') ? num('api-port', 0) : undefined,
    images: str('images', join(root, 'e2e', 'images.json')),
    port: num('port', 0),
    maxGraceSeconds: num('max-grace-seconds', 5),
    maxRestartBackoffMs: num('max-restart-backoff-ms', 10_000),
    statusDebounceMs: num('status-debounce-ms', 50),
    memoryLimits: str('memory-limits', 'true') !== 'false',
    podNice: Math.min(19, num('pod-nice', 10)),
    netnsPool: num('netns-pool', 256),
    ipReuse,
    cgroupName: 'spawner-e2e',
    logLevel,
    // Far more than the benchmarks need, so the scheduler never turns a pod away.
    capacity: { cpu: '64', memory: '256Gi', pods: '5000' },
  };
}
