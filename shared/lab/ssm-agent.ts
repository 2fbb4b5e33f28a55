import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Command, ListCommandsCommand, type SSMClient } from '@aws-sdk/client-ssm';
import type { NetnsHost } from './netns.ts';

/**
 * Plays the SSM agent for the capture document: resolves parameters the way SSM does (defaults,
 * unknown names refused, every String value checked against its allowedPattern), exports them
 * as SSM_<Name> environment variables (interpolationType ENV_VAR, as SSM Agent ≥ 3.3.2746 does),
 * sets AWS_SSM_INSTANCE_ID / AWS_SSM_REGION_NAME like the agent, writes the runShellScript lines
 * to a file and runs it with bash, inside a network namespace when one is given.
 */

export interface SsmDocumentParameter {
  type: string;
  default?: string | string[];
  allowedPattern?: string;
  interpolationType?: string;
}

export interface SsmCommandDocument {
  schemaVersion: string;
  parameters?: Record<string, SsmDocumentParameter>;
  mainSteps: { action: string; name: string; inputs: { runCommand: string[] } }[];
}

export class DocumentParameterError extends Error {
  readonly parameter: string;
  constructor(message: string, parameter: string) {
    super(message);
    this.name = 'DocumentParameterError';
    this.parameter = parameter;
  }
}

/**
 * The parameter values SSM would hand the agent, or a DocumentParameterError like SSM's
 * InvalidParameters. allowedPattern is a Java regex; Tapline's patterns use only syntax that
 * means the same in JavaScript, and are matched against the whole value.
 */
export function resolveDocumentParameters(
  document: SsmCommandDocument,
  given: Record<string, string | string[] | undefined>,
): Record<string, string> {
  const declared = document.parameters ?? {};
  for (const name of Object.keys(given)) {
    if (!(name in declared)) throw new DocumentParameterError(`unknown parameter ${name}`, name);
  }
  const resolved: Record<string, string> = {};
  for (const [name, spec] of Object.entries(declared)) {
    const raw = given[name] ?? spec.default;
    if (raw === undefined) throw new DocumentParameterError(`parameter ${name} is required`, name);
    const values = Array.isArray(raw) ? raw : [raw];
    if (spec.type === 'String' && values.length !== 1) {
      throw new DocumentParameterError(`parameter ${name} takes exactly one value`, name);
    }
    const value = values.join('\n');
    if (spec.allowedPattern !== undefined && !new RegExp(spec.allowedPattern).test(value)) {
      throw new DocumentParameterError(
        `parameter ${name} fails its allowedPattern ${spec.allowedPattern}`,
        name,
      );
    }
    resolved[name] = value;
  }
  return resolved;
}

export interface RunDocumentOptions {
  document: SsmCommandDocument;
  parameters: Record<string, string | string[] | undefined>;
  /** Run inside this namespace; undefined = this machine. */
  host?: NetnsHost | undefined;
  instanceId: string;
  region: string;
  /** Extra environment for the script (credentials the instance profile would give). */
  env?: Record<string, string>;
  timeoutMs?: number;
  /** Called with each stderr chunk as it arrives (e.g. to wait for "tcpdump listening"). */
  onStderr?: (chunk: string) => void;
}

export interface DocumentRun {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The last non-empty stdout line (the script's report), if any. */
  finalLine: string | undefined;
  durationMs: number;
}

const BASE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Runs the document's aws:runShellScript steps in order, stopping at the first that fails. */
export async function runCommandDocument(options: RunDocumentOptions): Promise<DocumentRun> {
  const values = resolveDocumentParameters(options.document, options.parameters);
  const env: Record<string, string> = {
    PATH: BASE_PATH,
    HOME: '/root',
    AWS_SSM_INSTANCE_ID: options.instanceId,
    AWS_SSM_REGION_NAME: options.region,
    ...(options.env ?? {}),
  };
  for (const [name, spec] of Object.entries(options.document.parameters ?? {})) {
    if (spec.interpolationType === 'ENV_VAR') env[`SSM_${name}`] = values[name]!;
  }
  const dir = await mkdtemp(join(tmpdir(), 'tlcap-agent-'));
  const started = Date.now();
  let stdout = '';
  let stderr = '';
  let exitCode: number | null = 0;
  let signal: NodeJS.Signals | null = null;
  try {
    for (const [index, step] of options.document.mainSteps.entries()) {
      if (step.action !== 'aws:runShellScript') {
        throw new Error(`step ${step.name}: only aws:runShellScript is supported`);
      }
      const script = join(dir, `_script-${index}.sh`);
      await writeFile(script, `${step.inputs.runCommand.join('\n')}\n`);
      await chmod(script, 0o700);
      const child = options.host
        ? options.host.spawn('bash', [script], { env, stdio: ['ignore', 'pipe', 'pipe'] })
        : spawn('bash', [script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout?.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
      });
      child.stderr?.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        options.onStderr?.(chunk.toString());
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 300_000);
      [exitCode, signal] = await new Promise<[number | null, NodeJS.Signals | null]>(
        (resolve, reject) => {
          child.once('error', reject);
          child.once('close', (code, sig) => resolve([code, sig]));
        },
      );
      clearTimeout(timer);
      if (exitCode !== 0) break;
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const lines = stdout.split('\n').filter((l) => l.trim().length > 0);
  return {
    exitCode,
    signal,
    stdout,
    stderr,
    finalLine: lines.at(-1),
    durationMs: Date.now() - started,
  };
}

/**
 * Runs the document and resolves `listening` once the script says tcpdump is capturing (its
 * "tapline: tcpdump listening" stderr line), so a test can send traffic only then.
 */
export function startCommandDocument(options: RunDocumentOptions): {
  listening: Promise<void>;
  done: Promise<DocumentRun>;
} {
  let seen = '';
  let resolveListening: () => void = () => {};
  const listening = new Promise<void>((resolve) => {
    resolveListening = resolve;
  });
  const done = runCommandDocument({
    ...options,
    onStderr: (chunk) => {
      options.onStderr?.(chunk);
      seen = (seen + chunk).slice(-4096);
      if (seen.includes('tapline: tcpdump listening')) resolveListening();
    },
  });
  done.finally(() => resolveListening());
  return { listening, done };
}

export interface LoopbackBridge {
  /** The URL that reaches the target from inside the namespace. */
  url: string;
  close(): Promise<void>;
}

/**
 * Makes a TCP service on this machine's loopback (moto) reachable on the SAME port of a
 * namespace's own loopback, through a Unix socket: a server here accepts on the socket and
 * connects to 127.0.0.1:port; a small node process inside the namespace listens on its
 * 127.0.0.1:port and forwards each connection to the socket. No address outside loopback is
 * ever used, so the script can keep EndpointUrl=http://127.0.0.1:PORT.
 */
export async function startLoopbackBridge(host: NetnsHost, port: number): Promise<LoopbackBridge> {
  const dir = await mkdtemp(join(tmpdir(), 'tlcap-bridge-'));
  const socketPath = join(dir, 'bridge.sock');
  const server: Server = createServer((inbound) => {
    const outbound = createConnection({ host: '127.0.0.1', port });
    inbound.pipe(outbound).pipe(inbound);
    const done = () => {
      inbound.destroy();
      outbound.destroy();
    };
    inbound.on('error', done);
    outbound.on('error', done);
    inbound.on('close', done);
    outbound.on('close', done);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  const inner = `
const net = require('node:net');
const server = net.createServer((c) => {
  const u = net.createConnection(${JSON.stringify(socketPath)});
  c.pipe(u).pipe(c);
  const done = () => { c.destroy(); u.destroy(); };
  c.on('error', done); u.on('error', done); c.on('close', done); u.on('close', done);
});
server.listen(${port}, '127.0.0.1', () => process.stdout.write('ready\\n'));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
`;
  const child = host.spawn(process.execPath, ['-e', inner], { stdio: ['pipe', 'pipe', 'pipe'] });
  let errors = '';
  child.stderr?.on('data', (c: Buffer) => {
    errors += c.toString();
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`bridge did not start: ${errors}`)), 10_000);
    child.stdout?.on('data', (c: Buffer) => {
      if (c.toString().includes('ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`bridge exited with ${code}: ${errors}`));
    });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    async close() {
      child.stdin?.end();
      child.kill('SIGTERM');
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface AgentInvocation {
  commandId: string;
  instanceId: string;
  documentName: string;
  parameters: Record<string, string[]>;
  run: DocumentRun;
  /** What a real agent would report to SSM: Success only when the script exited 0. */
  ssmStatus: 'Success' | 'Failed' | 'TimedOut';
}

export interface SsmAgentOptions {
  ssm: SSMClient;
  documentName: string;
  document: SsmCommandDocument;
  /** The instances this agent plays, and the namespace each one is. */
  hosts: Record<string, NetnsHost | undefined>;
  region: string;
  env?: Record<string, string>;
  timeoutMs?: number;
  onStderr?: (instanceId: string, chunk: string) => void;
}

/**
 * A polling agent for the lab: lists the commands SSM (moto) holds for the capture document,
 * runs each one not yet run on each instance it plays, and returns the invocations. moto adds
 * every EC2 instance to a command sent without Targets, so an instance counts only when the
 * command was meant for it: the command lists it and the agent plays it.
 */
export class SsmAgent {
  private readonly options: SsmAgentOptions;
  private readonly done = new Set<string>();

  constructor(options: SsmAgentOptions) {
    this.options = options;
  }

  async pending(): Promise<{ command: Command; instanceId: string }[]> {
    const out: { command: Command; instanceId: string }[] = [];
    let NextToken: string | undefined;
    do {
      const page = await this.options.ssm.send(new ListCommandsCommand({ NextToken }));
      for (const command of page.Commands ?? []) {
        if (command.DocumentName !== this.options.documentName) continue;
        for (const instanceId of command.InstanceIds ?? []) {
          if (!(instanceId in this.options.hosts)) continue;
          if (this.done.has(`${command.CommandId}/${instanceId}`)) continue;
          out.push({ command, instanceId });
        }
      }
      NextToken = page.NextToken;
    } while (NextToken);
    return out;
  }

  /** Runs every pending invocation (one host at a time per command) and returns them. */
  async runPending(): Promise<AgentInvocation[]> {
    const results: AgentInvocation[] = [];
    for (const { command, instanceId } of await this.pending()) {
      this.done.add(`${command.CommandId}/${instanceId}`);
      const parameters = (command.Parameters ?? {}) as Record<string, string[]>;
      const run = await runCommandDocument({
        document: this.options.document,
        parameters,
        host: this.options.hosts[instanceId],
        instanceId,
        region: this.options.region,
        ...(this.options.env ? { env: this.options.env } : {}),
        ...(this.options.timeoutMs ? { timeoutMs: this.options.timeoutMs } : {}),
        onStderr: (chunk) => this.options.onStderr?.(instanceId, chunk),
      });
      results.push({
        commandId: command.CommandId!,
        instanceId,
        documentName: command.DocumentName!,
        parameters,
        run,
        ssmStatus: run.exitCode === 0 ? 'Success' : run.signal ? 'TimedOut' : 'Failed',
      });
    }
    return results;
  }
}
