import { execFile } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { constants, gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { parseCaptureRequest } from '../../shared/capture/request.ts';

const repo = new URL('../../', import.meta.url).pathname;
const fixtures = join(repo, 'test/fixtures/flowlogs');

/** Runs `tapline detect …` as a user would (bin/main.ts under the project's Node 24). */
function tapline(
  args: string[],
  stdin?: Buffer,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [join(repo, 'bin/main.ts'), ...args],
      {
        cwd: repo,
        env: { ...process.env, RULES_OVERRIDE: '', FLOW_LOG_FORMAT: '' },
        maxBuffer: 16 << 20,
      },
      (error, stdout, stderr) => {
        resolve({
          code: error ? Number((error as { code?: number }).code ?? 1) : 0,
          stdout,
          stderr,
        });
      },
    );
    if (stdin) child.stdin!.end(stdin);
  });
}

/** `--json` output: one finding per line. */
const jsonLines = (stdout: string) =>
  stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));

describe('tapline detect', () => {
  it('prints one JSON finding per line with the contract fields and exits 1 on findings', async () => {
    const { code, stdout, stderr } = await tapline([
      'detect',
      join(fixtures, 'lab-real-v2.log'),
      '--json',
    ]);
    expect(code).toBe(1);
    const findings = jsonLines(stdout);
    expect(findings).toHaveLength(6);
    for (const f of findings) {
      for (const k of [
        'rule',
        'severity',
        'fingerprint',
        'srcaddr',
        'dstaddr',
        'srcport',
        'dstport',
        'protocol',
        'records',
        'start',
        'end',
        'capture',
      ]) {
        expect(f).toHaveProperty(k);
      }
      expect(() => parseCaptureRequest(f.capture.request)).not.toThrow();
    }
    expect(stderr).toMatch(/155 records/);
  });

  it('reads gzip from stdin, takes --format, and exits 0 without findings', async () => {
    const [header, ...records] = (await readFile(join(fixtures, 'lab-real-v5.log'), 'utf8'))
      .trim()
      .split('\n');
    const [viaStdin, clean] = await Promise.all([
      tapline(['detect', '-', '--format', header!, '--json'], gzipSync(records.join('\n'))),
      tapline(['detect', join(fixtures, 'aws-doc-default.log')]),
    ]);
    expect(viaStdin.code).toBe(1);
    expect(viaStdin.stdout.trim().split('\n')).toHaveLength(6);
    expect(clean).toMatchObject({ code: 0 });
    expect(clean.stdout).toMatch(/no findings/);
    expect(clean.stderr).toMatch(/1 NODATA, 1 SKIPDATA/);
  });

  it('applies --rules overrides and prints a table without escape codes when piped', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tldet-cli-'));
    const rules = join(dir, 'rules.json');
    await writeFile(
      rules,
      JSON.stringify({
        rules: { 'port-zero': { enabled: false }, 'port-scan': { distinctPorts: 100 } },
      }),
    );
    const { code, stdout } = await tapline([
      'detect',
      join(fixtures, 'lab-real-v2.log'),
      '--rules',
      rules,
    ]);
    expect(code).toBe(1);
    expect(stdout).toMatch(/^SEVERITY +RULE/);
    expect(stdout).toMatch(/host-sweep/);
    expect(stdout).not.toMatch(/port-zero|port-scan/);
    expect(stdout).not.toContain('\x1b[');
  });

  it('reads a Parquet flow log (AWS column names, GZIP pages)', async () => {
    const { flowLogParquet } = await import('../support/flowlog-parquet.ts');
    const text = await readFile(join(fixtures, 'lab-real-v5.log'), 'utf8');
    const dir = await mkdtemp(join(tmpdir(), 'tldet-cli-'));
    const file = join(dir, 'flows.log.parquet');
    // every numeric column as INT64 (detect-s3-flowlogs reads AWS's INT32/INT64 mix)
    await writeFile(file, flowLogParquet(text, { int32Fields: [] }));
    const { code, stdout, stderr } = await tapline(['detect', file, '--json']);
    expect(stderr).toMatch(/155 records, 0 NODATA, 0 SKIPDATA, 0 malformed, 6 findings/);
    expect(code).toBe(1);
    expect(stdout.trim().split('\n')).toHaveLength(6);
  });

  it('exits 2 on usage and input errors', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tldet-cli-'));
    const bad = join(dir, 'bad.json');
    await writeFile(bad, '{"rules":{"port-scan":{"distinctPort":5}}}');
    const notGzip = join(dir, 'broken.log.gz');
    await writeFile(notGzip, Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0]), Buffer.alloc(64, 7)]));
    const runs = await Promise.all([
      tapline(['detect', join(fixtures, 'ipv6.log'), '--rules', bad]),
      tapline(['detect', join(dir, 'missing.log')]),
      tapline(['detect', join(fixtures, 'ipv6.log'), '--format', 'srcaddr srcaddr']),
      tapline(['detect', notGzip]),
    ]);
    expect(runs.map((r) => r.code)).toEqual([2, 2, 2, 2]);
    expect(runs[0]!.stderr).toMatch(/distinctPort/);
  });

  it('a truncated gzip file: prints the findings from before the cut, marked, and exits 2', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tldet-cli-'));
    const text = await readFile(join(fixtures, 'lab-real-v5.log'));
    const filler = Buffer.from(
      Array.from(
        { length: 20_000 },
        (_, i) =>
          `5 123456789012 eni-0202000000000001a i-0202000000000001a 10.9.0.1 10.9.0.2 443 ${2000 + i} 6 1 ${40 + i} 1795424300 1795424301 ACCEPT OK 18 ingress -\n`,
      ).join(''),
    );
    const gz = gzipSync(Buffer.concat([text, filler]));
    const truncated = join(dir, 'truncated.log.gz');
    const cut = gz.subarray(0, Math.floor(gz.length * 0.8));
    await writeFile(truncated, cut);
    // what zlib can inflate of the cut object, and its complete lines (header included)
    const prefix = gunzipSync(cut, { finishFlush: constants.Z_SYNC_FLUSH });
    const completeLines =
      prefix
        .subarray(0, prefix.lastIndexOf(0x0a) + 1)
        .toString('latin1')
        .split('\n').length - 1;
    const { code, stdout, stderr } = await tapline(['detect', truncated, '--json']);
    expect(code).toBe(2);
    const findings = jsonLines(stdout);
    expect(findings).toHaveLength(6);
    for (const f of findings) expect(f.sourceDamaged).toMatch(/gzip stream cut short/);
    expect(stderr).toMatch(/gzip stream cut short after \d+ lines/);
    expect(stderr).toContain(
      `findings above come from the ${completeLines} complete lines before the damage`,
    );
  });
});
