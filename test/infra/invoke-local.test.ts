import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { provisionLabStack } from '../../shared/lab/lab-aws.ts';
import { PACKAGE_LOCK } from '../../shared/lab/packaged-template.ts';
import { motoClients, motoEndpoint } from '../support/aws.ts';
import { packagedTemplate } from '../support/template.ts';

// `serverless invoke local -f <fn> --path events/…` for every function, offline: osls bundles the
// handler with serverless-esbuild and runs it in-process with serverless.yml's plain-string
// environment (it merges that over the inherited process environment, so TAPLINE_AWS_ENDPOINT
// and the dummy credentials reach the handler). The stack's resources exist in the run's moto,
// provisioned from the packaged template of a stage no other test uses.

const run = promisify(execFile);
const repoRoot = new URL('../../', import.meta.url).pathname;
const bin = join(repoRoot, 'node_modules', '.bin');
const stage = `inv${randomBytes(3).toString('hex')}`;

const SAMPLES: [fn: string, event: string][] = [
  ['detectFlowAnomalies', 'events/cloudwatch-logs/port-zero.json'],
  ['startCapture', 'events/manual/instance.json'],
  ['rollingCapture', 'events/schedule/hourly.json'],
  ['trackCapture', 'events/ssm/command-status-success.json'],
  ['trackCapture', 'events/schedule/track-capture-sweep.json'],
  ['processPcap', 'events/sqs/pcap-created.json'],
];

/** The handler's return value: the last pretty-printed JSON document invoke local writes. */
function returnedValue(stdout: string): unknown {
  const lines = stdout.split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    if (!/^[[{]/.test(lines[i]) || lines[i].startsWith('{"level"')) continue;
    try {
      return JSON.parse(lines.slice(i).join('\n'));
    } catch {
      // a log line that happens to start with a brace; keep looking upwards
    }
  }
  throw new Error(`invoke local printed no return value:\n${stdout}`);
}

describe('serverless invoke local, offline, for every function with its sample event', () => {
  beforeAll(async () => {
    const pkg = await packagedTemplate(stage);
    await provisionLabStack(motoClients(), pkg, { endpoint: motoEndpoint(), region: 'us-east-1' });
  }, 600_000);

  it.each(SAMPLES)(
    '%s with %s returns a value without an unhandled exception',
    async (fn, event) => {
      const args = ['invoke', 'local', '-f', fn, '--path', event, '--stage', stage];
      // invoke local bundles into the repo's .esbuild/ like package does: take the same lock.
      const result = await run('flock', [PACKAGE_LOCK, join(bin, 'serverless'), ...args], {
        cwd: repoRoot,
        timeout: 600_000,
        maxBuffer: 32 * 1024 * 1024,
        env: {
          ...process.env,
          // the project's Node 24 (the handler runs inside the serverless process)
          PATH: `${bin}:${process.env.PATH}`,
          TAPLINE_AWS_ENDPOINT: motoEndpoint(),
          AWS_ACCESS_KEY_ID: 'testing',
          AWS_SECRET_ACCESS_KEY: 'testing',
          AWS_REGION: 'us-east-1',
        },
      }).catch((error: { code?: number; stdout?: string; stderr?: string }) => {
        throw new Error(
          `invoke local -f ${fn} exited ${error.code}\n${error.stdout ?? ''}\n${error.stderr ?? ''}`,
        );
      });
      const value = returnedValue(result.stdout) as Record<string, unknown>;
      expect(value).toBeTypeOf('object');
      expect(value).not.toHaveProperty('errorType');
      expect(value).not.toHaveProperty('stackTrace');
    },
    600_000,
  );
});
