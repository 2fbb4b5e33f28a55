import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import type { SsmCommandDocument } from '../../shared/lab/ssm-agent.ts';
import { lookbackStepScript, packagedStandbyDocument } from '../../shared/standby/document.ts';
import { parseStandbyReport } from '../../shared/standby/reports.ts';
import { planRing } from '../../shared/standby/ring-plan.ts';
import { packagedCaptureDocument } from '../support/template.ts';

/**
 * The standby document as the packaged template deploys it: its declarations, its patterns
 * against an injection corpus, its own re-check of every value, and its sizing (Action=plan runs
 * the real script; no root, no network) against shared/standby/ring-plan.ts.
 */
const INJECTION = [
  '-i eth0',
  '--help',
  'start; id',
  '$(id)',
  '`id`',
  'start\nstop',
  'start\n',
  '{{ Action }}',
  '{{ssm:secret}}',
  'ä',
  'start\u0000',
  '../../etc',
  '/etc/passwd',
  '/var/lib/tapline/../../etc',
  '/var/lib/tapline/ring;rm -rf /',
  'x'.repeat(5000),
];

describe('packaged standby document', () => {
  let document: SsmCommandDocument;
  let script: string;
  let dir: string;

  beforeAll(async () => {
    document = await packagedStandbyDocument();
    script = document.mainSteps[0]!.inputs.runCommand.join('\n');
    dir = await mkdtemp(join(tmpdir(), 'tlring-doc-'));
    await writeFile(join(dir, 'standby.sh'), `${script}\n`);
  });

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  function runScript(env: Record<string, string>) {
    const defaults = Object.fromEntries(
      Object.entries(document.parameters ?? {}).map(([name, p]) => [
        `SSM_${name}`,
        String(p.default ?? ''),
      ]),
    );
    const result = spawnSync('bash', [join(dir, 'standby.sh')], {
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...defaults, ...env },
      encoding: 'utf8',
      timeout: 30_000,
    });
    return { code: result.status, stdout: result.stdout, stderr: result.stderr };
  }

  it('is schema 2.2 with ENV_VAR and a JS-valid pattern on every String parameter', () => {
    expect(document.schemaVersion).toBe('2.2');
    expect(document.mainSteps).toHaveLength(1);
    expect(document.mainSteps[0]!.action).toBe('aws:runShellScript');
    for (const [name, p] of Object.entries(document.parameters ?? {})) {
      expect(p.type, name).toBe('String');
      expect(p.interpolationType, name).toBe('ENV_VAR');
      expect(p.allowedPattern, name).toMatch(/^\^.*\$$/);
      const pattern = new RegExp(p.allowedPattern!);
      if (p.default !== undefined) expect(pattern.test(String(p.default)), name).toBe(true);
    }
    expect(script).not.toMatch(/\{\{/);
    expect(script).toMatch(/^set -euo pipefail$/m);
    // tcpdump runs with -Z and -F, never -z (no post-rotate command).
    expect(script).toMatch(/-Z \$CONF_RUN_AS/);
    expect(script).toMatch(/-F \$RING\/filter\.bpf/);
    const tcpdumpArgs = /local args="(.*)"/.exec(script)?.[1] ?? '';
    expect(tcpdumpArgs).toMatch(/-Z .* -G .* -C .* -w /);
    expect(tcpdumpArgs).not.toMatch(/-z/);
  });

  it('deploys exactly the repository file, with patterns that mean the same in Java and JS', async () => {
    const source = parseYaml(
      await readFile(new URL('../../ssm-documents/tapline-standby.yml', import.meta.url), 'utf8'),
    ) as SsmCommandDocument;
    expect(document.mainSteps).toEqual(source.mainSteps);
    expect(document.parameters).toEqual(source.parameters);
    for (const [name, p] of Object.entries(document.parameters ?? {})) {
      const pattern = p.allowedPattern!;
      expect(pattern, `${name}: no lookaround / inline flags`).not.toMatch(/\(\?/);
      expect(pattern, `${name}: no Unicode classes`).not.toMatch(/\\[pPXRhHvV]/);
      expect(pattern, `${name}: no && (Java class intersection)`).not.toMatch(/&&/);
      expect(pattern, `${name}: no nested classes`).not.toMatch(/\[[^\]]*(?<!\\)\[/);
      expect(() => new RegExp(pattern, 'u'), name).not.toThrow();
    }
  });

  it('rejects the whole injection corpus by allowedPattern', () => {
    for (const [name, p] of Object.entries(document.parameters ?? {})) {
      const pattern = new RegExp(p.allowedPattern!);
      for (const value of INJECTION) {
        expect(pattern.test(value), `${name} accepted ${JSON.stringify(value)}`).toBe(false);
      }
    }
  });

  it('re-checks every value itself, as if the agent had skipped allowedPattern', () => {
    for (const [name, value] of [
      ['Action', 'start; id'],
      ['RingDirectory', '/var/lib/tapline/../../etc'],
      ['Interface', '-i'],
      ['Filter', '-w /etc/passwd'],
      ['CapMegabytes', '1$(id)'],
      ['RunAsUser', 'root;id'],
    ] as const) {
      const result = runScript({ SSM_Action: 'plan', [`SSM_${name}`]: value });
      expect(result.code, name).toBe(3);
      const report = parseStandbyReport(result.stdout);
      expect(report.status).toBe('refused');
      expect(report.error).toBe(`parameter ${name} does not match its allowed pattern`);
    }
    const unset = runScript({ SSM_Action: 'plan', SSM_CapMegabytes: '' });
    expect(unset.code).toBe(3);
    const missing = spawnSync('bash', [join(dir, 'standby.sh')], {
      env: { PATH: '/usr/bin:/bin' },
      encoding: 'utf8',
    });
    expect(missing.status).toBe(3);
    expect(parseStandbyReport(missing.stdout).error).toMatch(/SSM Agent 3\.3\.2746/);
  });

  it('sizes the ring exactly as shared/standby/ring-plan.ts (Action=plan)', () => {
    const settings = fc.record({
      retentionMinutes: fc.integer({ min: 1, max: 9999 }),
      rotateSeconds: fc.integer({ min: 1, max: 99_999 }),
      expectedMbps: fc.integer({ min: 1, max: 999_999 }),
      capMegabytes: fc.integer({ min: 3, max: 9_999_999 }),
    });
    const cases = fc.sample(settings, { numRuns: 30, seed: 20261123 });
    cases.push(
      { retentionMinutes: 15, rotateSeconds: 60, expectedMbps: 20, capMegabytes: 2048 },
      { retentionMinutes: 1, rotateSeconds: 2, expectedMbps: 1, capMegabytes: 4 },
      { retentionMinutes: 60, rotateSeconds: 30, expectedMbps: 1000, capMegabytes: 3 },
    );
    for (const c of cases) {
      const result = runScript({
        SSM_Action: 'plan',
        SSM_RetentionMinutes: String(c.retentionMinutes),
        SSM_RotateSeconds: String(c.rotateSeconds),
        SSM_ExpectedMbps: String(c.expectedMbps),
        SSM_CapMegabytes: String(c.capMegabytes),
      });
      expect(result.code, result.stderr).toBe(0);
      expect(parseStandbyReport(result.stdout).plan, JSON.stringify(c)).toEqual(planRing(c));
    }
    const tooSmall = runScript({ SSM_Action: 'plan', SSM_CapMegabytes: '2' });
    expect(tooSmall.code).toBe(3);
    expect(parseStandbyReport(tooSmall.stdout).error).toMatch(/at least 3/);
  });

  it('writes a systemd unit that runs the same supervisor, hardened', async () => {
    const unit = /<<UNITFILE\n([\s\S]*?)\nUNITFILE/.exec(script)?.[1];
    expect(unit).toBeDefined();
    // The sandbox lines in the names the host's systemd knows (219 on Amazon Linux 2).
    const modern = /SANDBOX="(MemoryMax=[\s\S]*?)"/.exec(script)?.[1];
    const legacy = /SANDBOX="(MemoryLimit=[\s\S]*?)"/.exec(script)?.[1];
    expect(modern?.split('\n')).toEqual([
      'MemoryMax=512M',
      'ProtectSystem=strict',
      'ReadWritePaths=$RING',
    ]);
    expect(legacy?.split('\n')).toEqual([
      'MemoryLimit=512M',
      'ProtectSystem=full',
      'ReadWriteDirectories=$RING',
    ]);
    expect(script).toMatch(/\[ "\$SYSTEMD_VERSION" -ge 232 \]/);
    const text = unit!.replace('$SANDBOX', modern!).replaceAll('$RING', join(dir, 'ring'));
    expect(text).toMatch(/^ExecStart=\/bin\/bash \S+\/supervisor\.sh \S+$/m);
    expect(text).toMatch(/^Restart=on-failure$/m);
    expect(text).toMatch(/^ProtectSystem=strict$/m);
    expect(text).toMatch(/^ReadWritePaths=\S+\/ring$/m);
    expect(text).toMatch(/^WantedBy=multi-user\.target$/m);
    // A private /tmp would hide a ring under /tmp from the look-back step.
    expect(text).not.toMatch(/PrivateTmp/);
    const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
    if (analyze.status === 0) {
      await mkdir(join(dir, 'ring'), { recursive: true });
      await writeFile(join(dir, 'ring', 'supervisor.sh'), '#!/bin/bash\n', { mode: 0o700 });
      await writeFile(join(dir, 'tapline-standby.service'), `${text}\n`);
      const verify = spawnSync(
        'systemd-analyze',
        ['verify', join(dir, 'tapline-standby.service')],
        {
          encoding: 'utf8',
        },
      );
      expect(verify.status, verify.stderr).toBe(0);
      expect(verify.stderr.trim(), verify.stderr).toBe('');
    }
  });

  it('carries no Serverless variable syntax in the look-back step it shares with the capture document', async () => {
    const step = await lookbackStepScript();
    expect(step).not.toMatch(/\$\{/);
    expect(step).not.toMatch(/\{\{/);
    const syntax = spawnSync('bash', ['-n'], { input: step, encoding: 'utf8' });
    expect(syntax.status, syntax.stderr).toBe(0);
    // The capture document accepts the standby document's default ring directory.
    const capture = (await packagedCaptureDocument()) as SsmCommandDocument;
    const ring = capture.parameters?.RingDirectory ?? document.parameters!.RingDirectory!;
    expect(new RegExp(ring.allowedPattern!).test('/var/lib/tapline/ring')).toBe(true);
  });
});
