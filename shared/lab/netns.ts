import { type ChildProcess, execFile, type SpawnOptions, spawn } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Test hosts as Linux network namespaces (root only). Every address used here lives inside
 * namespaces this process created; nothing is ever sent to any other address.
 */
export interface NetnsHost {
  name: string;
  /** Run a command inside the namespace and wait for it. */
  exec(
    cmd: string,
    args: string[],
    options?: { timeoutMs?: number; env?: NodeJS.ProcessEnv },
  ): Promise<{ stdout: string; stderr: string }>;
  /** Start a long-running command inside the namespace. */
  spawn(cmd: string, args: string[], options?: SpawnOptions): ChildProcess;
}

export async function ip(...args: string[]): Promise<string> {
  const { stdout } = await run('ip', args, { timeout: 10_000 });
  return stdout;
}

export function requireRoot(what: string): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new Error(`${what} needs root (network namespaces and tcpdump); run it as root`);
  }
}

export function netnsHost(name: string): NetnsHost {
  return {
    name,
    async exec(cmd, args, options = {}) {
      const { stdout, stderr } = await run('ip', ['netns', 'exec', name, cmd, ...args], {
        timeout: options.timeoutMs ?? 60_000,
        env: options.env ?? process.env,
        maxBuffer: 64 * 1024 * 1024,
      });
      return { stdout, stderr };
    },
    spawn(cmd, args, options = {}) {
      return spawn('ip', ['netns', 'exec', name, cmd, ...args], options);
    },
  };
}

export interface Link {
  /** Namespace and interface name on each side; CIDR address for each side. */
  a: { ns: string; ifname: string; address: string };
  b: { ns: string; ifname: string; address: string };
}

/**
 * A set of namespaces joined by veth pairs. `destroy()` removes everything it created and is
 * safe to call more than once (tests call it in afterAll, the lab on exit and on Ctrl-C).
 */
export class Topology {
  readonly prefix: string;
  private readonly namespaces: string[] = [];

  constructor(prefix: string) {
    if (!/^[a-z][a-z0-9]{1,8}$/.test(prefix)) throw new Error(`bad namespace prefix ${prefix}`);
    this.prefix = prefix;
  }

  async addHost(short: string): Promise<NetnsHost> {
    const name = `${this.prefix}-${short}`;
    await ip('netns', 'del', name).catch(() => undefined);
    await ip('netns', 'add', name);
    this.namespaces.push(name);
    await ip('-n', name, 'link', 'set', 'lo', 'up');
    return netnsHost(name);
  }

  async link(link: Link): Promise<void> {
    const tmpA = `${this.prefix}a${Math.random().toString(36).slice(2, 7)}`;
    const tmpB = `${this.prefix}b${Math.random().toString(36).slice(2, 7)}`;
    await ip('link', 'add', tmpA, 'type', 'veth', 'peer', 'name', tmpB);
    for (const [tmp, side] of [
      [tmpA, link.a],
      [tmpB, link.b],
    ] as const) {
      await ip('link', 'set', tmp, 'netns', side.ns);
      await ip('-n', side.ns, 'link', 'set', tmp, 'name', side.ifname);
      await ip('-n', side.ns, 'addr', 'add', side.address, 'dev', side.ifname);
      await ip('-n', side.ns, 'link', 'set', side.ifname, 'up');
    }
  }

  async route(ns: string, destination: string, via: string): Promise<void> {
    await ip('-n', ns, 'route', 'replace', destination, 'via', via);
  }

  async enableForwarding(ns: string): Promise<void> {
    await netnsHost(ns).exec('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
  }

  async destroy(): Promise<void> {
    while (this.namespaces.length > 0) {
      const name = this.namespaces.pop()!;
      await ip('netns', 'del', name).catch(() => undefined);
    }
  }
}
