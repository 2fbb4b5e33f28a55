import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

export interface MotoServer {
  endpoint: string;
  port: number;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Start moto (AWS on the wire) on a free loopback port and wait until it answers.
 * Used by the test run (once), the lab and the benchmarks. Install elsewhere with
 * `pip install "moto[server]"`.
 */
export async function startMoto(
  options: { python?: string; log?: (line: string) => void } = {},
): Promise<MotoServer> {
  const port = await freePort();
  const python = options.python ?? process.env.TAPLINE_PYTHON ?? 'python3';
  const child: ChildProcess = spawn(
    python,
    // moto's server with S3 conditional writes made atomic (see moto-server-atomic.py)
    [
      fileURLToPath(new URL('./moto-server-atomic.py', import.meta.url)),
      '-H',
      '127.0.0.1',
      '-p',
      String(port),
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, MOTO_ALLOW_NONEXISTENT_REGION: 'true' },
    },
  );
  let output = '';
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
    options.log?.(chunk.toString());
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`moto exited with ${child.exitCode} before it answered: ${output}`);
    }
    try {
      const response = await fetch(`${endpoint}/moto-api/`);
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`moto did not answer on ${endpoint} within 30 s: ${output}`);
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  return {
    endpoint,
    port,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
