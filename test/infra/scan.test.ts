import { execFile } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { type PackagedTemplate, packagedTemplate } from '../support/template.ts';

const run = promisify(execFile);
const repoRoot = new URL('../../', import.meta.url).pathname;
const node = join(repoRoot, 'node_modules', '.bin', 'node');

interface ScanOutcome {
  code: number;
  report: {
    open: { tool: string; rule: string; resource: string }[];
    stale: unknown[];
    findings: { rule: string; resource: string; allowlisted?: string }[];
  };
}

async function runScan(templatePath: string, kind = '--template'): Promise<ScanOutcome> {
  try {
    const { stdout } = await run(node, ['scripts/scan.ts', '--json', kind, templatePath], {
      cwd: repoRoot,
      maxBuffer: 32 * 1024 * 1024,
      timeout: 300_000,
    });
    return { code: 0, report: JSON.parse(stdout) };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    if (e.code !== 1) throw new Error(`scan exited ${e.code}: ${e.stderr}`);
    return { code: 1, report: JSON.parse(e.stdout) };
  }
}

/**
 * The real packaged template with the protections a careless edit could drop: Object Lock,
 * bucket encryption, a function's DLQ, a document parameter's allowedPattern, replication, the
 * TLS-only statement, and a least-privilege role turned into s3:* on *.
 */
function weaken(template: PackagedTemplate['template']): PackagedTemplate['template'] {
  const t = structuredClone(template);
  const bucket = t.Resources.EvidenceBucket.Properties as Record<string, unknown>;
  delete bucket.ObjectLockEnabled;
  delete bucket.ObjectLockConfiguration;
  delete bucket.BucketEncryption;
  delete bucket.ReplicationConfiguration;
  delete (t.Resources.StartCaptureLambdaFunction.Properties as Record<string, unknown>)
    .DeadLetterConfig;
  const params = t.Resources.CaptureDocument.Properties?.Content.parameters;
  delete params.Filter.allowedPattern;
  const policy = t.Resources.EvidenceBucketPolicy.Properties?.PolicyDocument;
  policy.Statement = policy.Statement.filter(
    (s: { Sid: string }) => s.Sid !== 'DenyInsecureTransport',
  );
  t.Resources.ProcessPcapRole.Properties?.Policies[0].PolicyDocument.Statement.push({
    Effect: 'Allow',
    Action: 's3:*',
    Resource: '*',
  });
  return t;
}

describe('npm run scan (cfn-lint + cfn-guard with Control Tower and Tapline rules)', () => {
  let pkg: PackagedTemplate;
  beforeAll(async () => {
    pkg = await packagedTemplate();
  });

  it('passes the packaged template with every finding allowlisted', async () => {
    const { code, report } = await runScan(
      join(pkg.dir, 'cloudformation-template-update-stack.json'),
    );
    expect(report.open).toEqual([]);
    expect(report.stale).toEqual([]);
    expect(code).toBe(0);
  });

  it('fails a weakened copy of the packaged template and names what was removed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tapline-weakened-'));
    const path = join(dir, 'weakened-template.json');
    await writeFile(path, JSON.stringify(weaken(pkg.template), null, 1));

    const { code, report } = await runScan(path);

    expect(code).toBe(1);
    const open = report.open.map((f) => `${f.rule} ${f.resource}`);
    expect(open).toEqual(
      expect.arrayContaining([
        'CT.S3.PR.9 EvidenceBucket',
        'CT.S3.PR.10 EvidenceBucket',
        'TAPLINE.S3.1 EvidenceBucket',
        'TAPLINE.S3.2 EvidenceBucket',
        'TAPLINE.S3.3 EvidenceBucket',
        'TAPLINE.LAMBDA.1 StartCaptureLambdaFunction',
        'TAPLINE.SSM.1 CaptureDocument',
        'CT.S3.PR.8 EvidenceBucketPolicy',
        'TAPLINE.S3.5 EvidenceBucketPolicy',
        'TAPLINE.IAM.1 ProcessPcapRole',
        'TAPLINE.IAM.2 ProcessPcapRole',
      ]),
    );
  });

  it('fails a copy whose evidence SSE denies lack the Null guard, guard the key-id header, or lack the SSE-C deny (TAPLINE.S3.5)', async () => {
    /** The packaged template with `change` applied to both SSE deny statements. */
    const variant = async (name: string, change: (condition: Record<string, any>) => void) => {
      const t = structuredClone(pkg.template);
      const policy = t.Resources.EvidenceBucketPolicy.Properties?.PolicyDocument;
      const denies = policy.Statement.filter((s: { Sid: string }) =>
        ['DenyUploadsNotSseKms', 'DenyUploadsWithAnotherKey'].includes(s.Sid),
      );
      expect(denies).toHaveLength(2);
      for (const s of denies) change(s.Condition);
      const dir = await mkdtemp(join(tmpdir(), 'tapline-weakened-'));
      const path = join(dir, `${name}-template.json`);
      await writeFile(path, JSON.stringify(t, null, 1));
      return runScan(path);
    };
    /** The packaged template without the SSE-C deny: SSE-C sends no SSE header, so it passes. */
    const withoutSseCDeny = async () => {
      const t = structuredClone(pkg.template);
      const policy = t.Resources.EvidenceBucketPolicy.Properties?.PolicyDocument;
      const before = policy.Statement.length;
      policy.Statement = policy.Statement.filter(
        (s: { Sid: string }) => s.Sid !== 'DenySseCUploads',
      );
      expect(policy.Statement).toHaveLength(before - 1);
      const dir = await mkdtemp(join(tmpdir(), 'tapline-weakened-'));
      const path = join(dir, 'no-sse-c-deny-template.json');
      await writeFile(path, JSON.stringify(t, null, 1));
      return runScan(path);
    };
    const [unguarded, keyIdGuard, sseC] = await Promise.all([
      // refuses every multipart upload (pcaps above 8 MB)
      variant('unguarded', (c) => {
        delete c.Null;
      }),
      // lets aws:kms without a key ID through: the AWS managed key, not the evidence key
      variant('key-id-guard', (c) => {
        c.Null = { 's3:x-amz-server-side-encryption-aws-kms-key-id': 'false' };
      }),
      // lets SSE-C through: evidence encrypted with a key only the uploader holds
      withoutSseCDeny(),
    ]);
    for (const { code, report } of [unguarded, keyIdGuard, sseC]) {
      expect(code).toBe(1);
      expect(report.open.map((f) => `${f.rule} ${f.resource}`)).toEqual([
        'TAPLINE.S3.5 EvidenceBucketPolicy',
      ]);
    }
  });

  it('fails a weakened copy of the replica template (no Object Lock, no encryption, no TLS 1.2 deny, no Null guards)', async () => {
    const replica = parse(
      await readFile(new URL('../../resources/replica-stack.yml', import.meta.url), 'utf8'),
    );
    const bucket = replica.Resources.ReplicaBucket.Properties;
    delete bucket.ObjectLockEnabled;
    delete bucket.ObjectLockConfiguration;
    delete bucket.BucketEncryption;
    const policy = replica.Resources.ReplicaBucketPolicy.Properties.PolicyDocument;
    policy.Statement = policy.Statement.filter((s: { Sid: string }) => s.Sid !== 'DenyTlsBelow12');
    for (const s of policy.Statement) delete s.Condition?.Null;
    const dir = await mkdtemp(join(tmpdir(), 'tapline-weakened-'));
    const path = join(dir, 'weakened-replica.json');
    await writeFile(path, JSON.stringify(replica, null, 1));

    const { code, report } = await runScan(path, '--replica');

    expect(code).toBe(1);
    expect(report.open.map((f) => `${f.rule} ${f.resource}`)).toEqual(
      expect.arrayContaining([
        'CT.S3.PR.9 ReplicaBucket',
        'CT.S3.PR.10 ReplicaBucket',
        'TAPLINE.REPLICA.1 ReplicaBucket',
        'TAPLINE.REPLICA.2 ReplicaBucket',
        'TAPLINE.S3.4 ReplicaBucketPolicy',
        'TAPLINE.REPLICA.4 ReplicaBucketPolicy',
      ]),
    );
  });
});
