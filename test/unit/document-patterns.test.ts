import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { captureDocumentParameters } from '../../shared/capture/document-parameters.ts';
import { checkBpfExpression } from '../../shared/capture/filter.ts';
import { parseCaptureRequest } from '../../shared/capture/request.ts';
import { resolveDocumentParameters, type SsmCommandDocument } from '../../shared/lab/ssm-agent.ts';
import { INJECTION_CORPUS } from '../fixtures/capture/injection-corpus.ts';
import { packagedCaptureDocument } from '../support/template.ts';

const run = promisify(execFile);

/** Characters a BPF expression legitimately uses: allowed by the Filter pattern on purpose. */
const BPF_CHARS = /^[a-zA-Z0-9 .:/()!&|<>=*+[\]-]*$/;

async function documents() {
  const packaged = (await packagedCaptureDocument()) as SsmCommandDocument;
  const source = parseYaml(
    await readFile(new URL('../../ssm-documents/tapline-capture.yml', import.meta.url), 'utf8'),
  ) as SsmCommandDocument;
  return { packaged, source };
}

describe('the packaged capture document', () => {
  // `serverless package` runs once per test process; give it the hook's budget, not a test's.
  beforeAll(async () => {
    await packagedCaptureDocument();
  }, 240_000);

  it('deploys exactly the script in the repository (packaging changed nothing)', async () => {
    const { packaged, source } = await documents();
    expect(packaged.mainSteps).toEqual(source.mainSteps);
    expect(packaged.parameters).toEqual(source.parameters);
  });

  it('uses only regex syntax that means the same in Java (SSM) and JavaScript', async () => {
    const { packaged } = await documents();
    for (const [name, p] of Object.entries(packaged.parameters ?? {})) {
      const pattern = p.allowedPattern!;
      expect(pattern, name).toMatch(/^\^/);
      expect(pattern, name).toMatch(/\$$/);
      expect(pattern, `${name}: no lookaround / inline flags`).not.toMatch(/\(\?/);
      expect(pattern, `${name}: no Unicode classes`).not.toMatch(/\\[pPXRhHvV]/);
      expect(pattern, `${name}: no && (Java class intersection)`).not.toMatch(/&&/);
      expect(pattern, `${name}: no nested classes`).not.toMatch(/\[[^\]]*(?<!\\)\[/);
      expect(() => new RegExp(pattern, 'u'), name).not.toThrow();
    }
  });

  it('refuses the whole injection corpus in every String parameter by allowedPattern alone', async () => {
    const { packaged } = await documents();
    let checked = 0;
    for (const [name, p] of Object.entries(packaged.parameters ?? {})) {
      const pattern = new RegExp(p.allowedPattern!);
      for (const value of INJECTION_CORPUS) {
        if (name === 'Filter' && BPF_CHARS.test(value) && !value.startsWith('-')) {
          // Only BPF operator characters: harmless in the filter file, refused by the grammar.
          expect(() => checkBpfExpression(value), value).toThrow();
          continue;
        }
        expect(pattern.test(value), `${name} accepted ${JSON.stringify(value)}`).toBe(false);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(INJECTION_CORPUS.length * 15);
  });

  it('takes no leading zeros in a number, in allowedPattern and in the script (bash reads 0100 as octal)', async () => {
    const { packaged } = await documents();
    const standby = parseYaml(
      await readFile(new URL('../../ssm-documents/tapline-standby.yml', import.meta.url), 'utf8'),
    ) as SsmCommandDocument;
    let numeric = 0;
    for (const doc of [packaged, standby]) {
      const script = doc.mainSteps.map((step) => step.inputs.runCommand.join('\n')).join('\n');
      const inScript = new Map(
        [...script.matchAll(/^param [A-Z_]+ ([A-Za-z]+) '([^']+)'$/gm)].map((m) => [m[1]!, m[2]!]),
      );
      for (const [name, p] of Object.entries(doc.parameters ?? {})) {
        const patterns = [p.allowedPattern!, inScript.get(name)!];
        expect(patterns[1], `${name}: the script checks it too`).toBeDefined();
        const only = new RegExp(patterns[0]!);
        if (!only.test('1') || only.test('x')) continue;
        numeric++;
        for (const pattern of patterns) {
          for (const value of ['01', '0100', '0800', '00']) {
            expect(new RegExp(pattern!).test(value), `${name} accepted ${value}`).toBe(false);
          }
        }
      }
    }
    expect(numeric).toBeGreaterThanOrEqual(14);
  });

  it('accepts every value the capture core sends', async () => {
    const { packaged } = await documents();
    const request = parseCaptureRequest({
      targets: { kind: 'instances', instanceIds: ['i-0123456789abcdef0'] },
      reason: 'IR-1',
      snaplen: 'headers',
      filter: { kind: 'bpf', expression: 'tcp[13] & 2 != 0 and (port 0 or portrange 1-1023)' },
    });
    const params = captureDocumentParameters({
      captureId: 'cap-20261123T084000Z-1a2b3c4d',
      request,
      bpf: 'tcp[13] & 2 != 0 and (port 0 or portrange 1-1023)',
      durationSeconds: 86_400,
      maxMegabytes: 1_000_000,
      bucket: 'tapline-prod-eu-west-1-evidence',
      keyArn: 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab',
      region: 'eu-west-1',
      minFreeMegabytes: 1024,
      hostS3Endpoint: 'https://bucket.vpce-0a1b2c3d4e5f-abcdefgh.s3.eu-west-1.vpce.amazonaws.com',
      hostWorkDir: '/var/lib/tapline',
    });
    const resolved = resolveDocumentParameters(packaged, params);
    expect(resolved.Filter).toBe('tcp[13] & 2 != 0 and (port 0 or portrange 1-1023)');
    expect(resolved.RunAsUser).toBe('tcpdump');
  });

  it('never interpolates a parameter into its script and keeps the safety properties', async () => {
    const { packaged } = await documents();
    const script = packaged.mainSteps[0]!.inputs.runCommand.join('\n');
    expect(script).not.toMatch(/\{\{/);
    expect(script).not.toMatch(/\$\{/);
    expect(script).toMatch(/^set -euo pipefail$/m);
    expect(script).toContain('-F $RUN_DIR/filter.bpf');
    expect(script).toContain('-Z $RUN_AS');
    expect(script).toContain('-C $ROTATE_MB -W $FILE_COUNT');
    expect(script).toContain('-G $ROTATE_SECONDS');
    expect(script).toContain('timeout --signal=INT');
    expect(script).toMatch(/nice -n 10 ionice -c 3/);
    // Never -z (tcpdump would run a command per file): no tcpdump argument line carries it.
    const tcpdumpLines = script
      .split('\n')
      .filter((l) => /TCPDUMP_ARGS|"\$TCPDUMP"/.test(l) && !/\[ -z /.test(l));
    expect(tcpdumpLines.length).toBeGreaterThanOrEqual(4);
    for (const line of tcpdumpLines) expect(line).not.toMatch(/\s-z\b/);
    expect(script).toContain('--checksum-algorithm SHA256 --checksum-sha256 "$b64"');
    expect(script).toContain('--server-side-encryption aws:kms --ssekms-key-id "$KMS_KEY"');
    expect(script).toContain('lookback=false');
    for (const [name, p] of Object.entries(packaged.parameters ?? {})) {
      expect(p.interpolationType, name).toBe('ENV_VAR');
      expect(script, `the script reads SSM_${name}`).toContain(` ${name} '`);
    }
    const dir = await mkdtemp(join(tmpdir(), 'tlcap-doc-'));
    try {
      await writeFile(join(dir, 'script.sh'), script);
      await run('bash', ['-n', join(dir, 'script.sh')]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('the script refuses a value that slips past allowedPattern (defence in depth)', async () => {
    const { packaged } = await documents();
    const script = packaged.mainSteps[0]!.inputs.runCommand.join('\n');
    const dir = await mkdtemp(join(tmpdir(), 'tlcap-doc-'));
    try {
      await writeFile(join(dir, 'script.sh'), script);
      const env: Record<string, string> = {
        PATH: '/usr/bin:/bin',
        AWS_SSM_INSTANCE_ID: 'i-0123456789abcdef0',
      };
      for (const [name, p] of Object.entries(packaged.parameters ?? {})) {
        env[`SSM_${name}`] = String(p.default ?? '');
      }
      Object.assign(env, {
        SSM_CaptureId: 'cap-20261123T084000Z-1a2b3c4d',
        SSM_Bucket: 'bucket-one',
        SSM_KmsKeyId: 'arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab',
        SSM_Region: 'us-east-1',
        SSM_Interface: 'eth0;touch /tmp/tlcap-pwned',
      });
      const result = await run('bash', [join(dir, 'script.sh')], { env }).catch((e) => e);
      expect(result.code).toBe(3);
      const report = JSON.parse(result.stdout.trim().split('\n').at(-1));
      expect(report).toMatchObject({
        status: 'refused',
        captureId: 'cap-20261123T084000Z-1a2b3c4d',
      });
      expect(report.errors).toEqual(['parameter Interface does not match its allowed pattern']);
      const missing = await run('bash', [join(dir, 'script.sh')], {
        env: { PATH: '/usr/bin:/bin' },
      }).catch((e) => e);
      expect(JSON.parse(missing.stdout.trim()).errors[0]).toMatch(/SSM Agent 3\.3\.2746/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
