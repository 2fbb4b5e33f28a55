import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { captureRequestFromFlags } from '../../bin/capture-flags.ts';
import { waitTimeoutMs } from '../../bin/commands/capture.ts';
import { parseCaptureRequest } from '../../shared/capture/request.ts';
import { InvalidCaptureRequestError } from '../../shared/errors.ts';

const repo = new URL('../../', import.meta.url).pathname;

// `tapline capture|plan --finding FILE` takes a line of `tapline detect --json`: the file here
// is real detect output, so a change of either side's shape shows.
let findingFile: string;
let finding: { fingerprint: string; capture: { request: Record<string, unknown> } };

beforeAll(async () => {
  // exit code 1: findings were made (what we want here)
  const stdout = await new Promise<string>((resolve) =>
    execFile(
      process.execPath,
      [join(repo, 'bin/main.ts'), 'detect', 'test/fixtures/flowlogs/lab-real-v2.log', '--json'],
      { cwd: repo, env: { ...process.env, RULES_OVERRIDE: '', FLOW_LOG_FORMAT: '' } },
      (_error, out) => resolve(out),
    ),
  );
  const line = stdout.split('\n').find((l) => l.includes('"rule":"port-zero"'))!;
  finding = JSON.parse(line);
  findingFile = join(await mkdtemp(join(tmpdir(), 'tapline-finding-')), 'finding.jsonl');
  await writeFile(findingFile, `${line}\n`);
});

describe('capture flags: --finding', () => {
  it("starts the finding's suggested capture, asked for by whoever runs the CLI", async () => {
    const request = await captureRequestFromFlags({ finding: findingFile }, 'cli');
    const suggested = finding.capture.request;
    expect(request).toMatchObject({
      targets: suggested.targets,
      filter: suggested.filter,
      durationSeconds: suggested.durationSeconds,
      lookbackSeconds: suggested.lookbackSeconds,
      reason: suggested.reason,
      fingerprint: finding.fingerprint,
      finding: suggested.finding,
      source: 'cli',
    });
    // the detector's name is not the requester: the CLI fills in the caller's identity
    expect(request.requestedBy).toBeUndefined();
    expect(parseCaptureRequest(request).source).toBe('cli');
  });

  it('lets flags override where, how long and why', async () => {
    const request = await captureRequestFromFlags(
      {
        finding: findingFile,
        target: ['i-0123456789abcdef0'],
        duration: '60',
        reason: 'IR-7 follow-up',
        requestedBy: 'alice',
      },
      'cli',
    );
    expect(request).toMatchObject({
      targets: { kind: 'instances', instanceIds: ['i-0123456789abcdef0'] },
      durationSeconds: 60,
      reason: 'IR-7 follow-up',
      requestedBy: 'alice',
      filter: finding.capture.request.filter,
    });
  });

  it('refuses a finding line without a suggested capture request, naming the file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tapline-finding-'));
    for (const [name, text] of [
      ['old-shape.jsonl', JSON.stringify({ rule: 'port-zero', capture: { targets: {} } })],
      ['no-capture.jsonl', JSON.stringify({ rule: 'port-zero' })],
      ['not-json.jsonl', 'port-zero 10.0.0.1'],
      ['array.jsonl', JSON.stringify({ capture: { request: [] } })],
    ] as const) {
      const file = join(dir, name);
      await writeFile(file, text);
      const attempt = captureRequestFromFlags({ finding: file }, 'cli');
      await expect(attempt).rejects.toBeInstanceOf(InvalidCaptureRequestError);
      await expect(attempt).rejects.toThrow(file);
    }
  });
});

describe('capture flags: nothing the responder asked for is dropped', () => {
  const where = { target: ['i-0123456789abcdef0'], reason: 'IR-7' };

  it('refuses --direction without --host (it says which side the host is on)', async () => {
    await expect(
      captureRequestFromFlags({ ...where, direction: 'src', port: ['443'] }, 'cli'),
    ).rejects.toThrow('--direction says which side --host is on');
    const request = await captureRequestFromFlags(
      { ...where, direction: 'src', host: ['203.0.113.9'] },
      'cli',
    );
    expect(request.filter).toMatchObject({ hosts: ['203.0.113.9'], direction: 'src' });
  });

  it('refuses --headers-only together with --snaplen', async () => {
    await expect(
      captureRequestFromFlags({ ...where, headersOnly: true, snaplen: '1500' }, 'cli'),
    ).rejects.toThrow('either --headers-only or --snaplen');
    expect((await captureRequestFromFlags({ ...where, headersOnly: true }, 'cli')).snaplen).toBe(
      'headers',
    );
  });
});

describe('capture --wait', () => {
  const now = Date.parse('2026-11-23T10:00:00Z');

  it("follows the capture to its hosts' report deadline plus one time-out sweep", () => {
    // a 5-minute capture asked for with a 1-hour look-back and a stage default: the start
    // answer's deadline is what counts, not the --duration flag
    const timeout = waitTimeoutMs({ ok: true, deadline: '2026-11-23T11:20:00Z' }, 300, now);
    expect(timeout).toBe((80 + 15 + 1) * 60_000);
  });

  it('falls back to the requested duration plus 15 minutes without a deadline', () => {
    expect(waitTimeoutMs({ ok: true }, 300, now)).toBe((300 + 900) * 1000);
    expect(waitTimeoutMs({ ok: true, deadline: 'not a date' }, 60, now)).toBe(960_000);
  });
});
