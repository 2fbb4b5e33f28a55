import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { versionedBucketWithKey } from './aws.ts';

/**
 * What the lab tests (network namespaces, real tcpdump, the SSM documents run as the agent
 * would) share: the precondition check, the AWS CLI environment inside a namespace, an evidence
 * bucket and key on moto, and the capture document's parameters.
 */

/**
 * True when the test can run here (root and every tool). On CI a missing tool or root is an
 * error, not a skip: the lab tests are part of what CI proves.
 */
export function labCanRun(what: string, tools: readonly string[]): boolean {
  const missing = tools.filter(
    (t) => !existsSync(t) && !existsSync(`/usr/sbin/${t}`) && !existsSync(`/usr/bin/${t}`),
  );
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const canRun = isRoot && missing.length === 0;
  if (process.env.CI && !canRun) {
    throw new Error(
      `${what} needs root and ${tools.join(', ')}; missing: ${missing.join(', ') || 'root'}`,
    );
  }
  return canRun;
}

/** The AWS CLI in a namespace: moto's test credentials, no config files from this machine. */
export const LAB_AWS_ENV = {
  AWS_ACCESS_KEY_ID: 'testing',
  AWS_SECRET_ACCESS_KEY: 'testing',
  AWS_CONFIG_FILE: '/nonexistent/tapline-config',
  AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/tapline-credentials',
} as const;

export interface LabEvidence {
  bucket: string;
  keyArn: string;
  /** A fresh local directory for the document's WorkDir. */
  workDir: string;
}

/** A versioned evidence bucket and a KMS key on moto, and a work directory. */
export async function labEvidence(prefix: string): Promise<LabEvidence> {
  const { bucket, keyArn } = await versionedBucketWithKey(prefix);
  // the capture document's WorkDir pattern: /tmp/tapline…
  const workDir = await mkdtemp(join(tmpdir(), `tapline-${prefix}-`));
  return { bucket, keyArn, workDir };
}

/** The capture document's parameters for a lab run (short, small, uploads through a bridge). */
export function labCaptureParameters(
  evidence: LabEvidence,
  endpointUrl: string,
  captureId: string,
  overrides: Record<string, string> = {},
): Record<string, string> {
  return {
    CaptureId: captureId,
    Bucket: evidence.bucket,
    KmsKeyId: evidence.keyArn,
    Region: 'us-east-1',
    Interface: 'auto',
    DurationSeconds: '6',
    RotateSeconds: '0',
    RotateMegabytes: '1',
    FileCount: '10',
    MaxMegabytes: '64',
    Filter: '(tcp or udp) and port 0 or icmp',
    MinFreeMegabytes: '1',
    WorkDir: evidence.workDir,
    EndpointUrl: endpointUrl,
    UploadAttempts: '2',
    ...overrides,
  };
}

/**
 * tshark's `fields` of the frames `filter` selects in an evidence object, one array per frame;
 * the object is downloaded into `dir` under the last part of its key.
 */
export async function tsharkFieldsOfObject(
  s3: S3Client,
  object: { bucket: string; key: string; dir: string },
  filter: string,
  fields: readonly string[],
): Promise<string[][]> {
  const body = await s3.send(new GetObjectCommand({ Bucket: object.bucket, Key: object.key }));
  const local = join(object.dir, object.key.split('/').at(-1)!);
  await writeFile(local, Buffer.from(await body.Body!.transformToByteArray()));
  const { stdout } = await promisify(execFile)('tshark', [
    '-n',
    '-r',
    local,
    '-Y',
    filter,
    '-T',
    'fields',
    ...fields.flatMap((field) => ['-e', field]),
  ]);
  return stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split('\t'));
}

/**
 * A process the documents take for a tcpdump by its name (a script: its comm is its file name)
 * writing to `writeTo` (its command line carries `-w writeTo`), in its own process group; stop it
 * with `process.kill(-child.pid, 'SIGKILL')`.
 */
export async function fakeTcpdump(dir: string, writeTo: string): Promise<ChildProcess> {
  const fake = join(dir, 'tcpdump');
  await writeFile(fake, '#!/bin/sh\nsleep 60\n', { mode: 0o755 });
  const child = spawn(fake, ['-n', '-w', writeTo], { stdio: 'ignore', detached: true });
  await new Promise((r) => setTimeout(r, 100));
  return child;
}
