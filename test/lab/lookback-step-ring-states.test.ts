import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, truncate, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lookbackStepScript } from '../../shared/standby/document.ts';
import { parseLookbackReport } from '../../shared/standby/reports.ts';
import { fakeTcpdump, labCanRun } from '../support/lab.ts';

const canRun = labCanRun('look-back step ring states test', ['bash', 'od', 'sleep']);
const INSTANCE = 'i-0123456789abcdef0';
const CAPTURE = 'cap-20261123T220000Z-0a1b2c3d';

/**
 * The look-back step (ssm-documents/lookback-step.sh, as the capture document carries it) run by
 * bash on ring directories in states the live lab rarely reaches: no SSM agent, no namespaces, no
 * upload (the freeze phase alone, or an endpoint nothing listens on). Root: the step refuses a ring
 * not owned by root.
 */
describe.runIf(canRun)('the look-back step on unusual rings', () => {
  let root: string;
  let step: string;

  beforeAll(async () => {
    root = await mkdtemp('/tmp/tapline-lbstates-');
    step = await lookbackStepScript();
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  function runStep(env: Record<string, string>, body: string) {
    const run = spawnSync('bash', ['-c', `set -euo pipefail\numask 077\n${step}\n${body}`], {
      encoding: 'utf8',
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        LC_ALL: 'C',
        SSM_CaptureId: CAPTURE,
        SSM_Bucket: 'tapline-test-evidence',
        SSM_KmsKeyId: 'arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab',
        SSM_Region: 'us-east-1',
        SSM_EndpointUrl: 'http://127.0.0.1:19',
        SSM_UploadAttempts: '1',
        SSM_MinFreeMegabytes: '1',
        ...env,
      },
      timeout: 60_000,
    });
    expect(run.status, run.stderr).toBe(0);
    return run;
  }

  /** The whole step (freeze, upload, finish) and the report it prints. */
  function runLookback(env: Record<string, string>) {
    const run = runStep(env, `tl_lb_run ${INSTANCE} ""\nprintf '%s\\n' "$LOOKBACK_JSON"`);
    return parseLookbackReport(JSON.parse(run.stdout.trim().split('\n').at(-1)!));
  }

  async function ring(name: string, files: { epoch: number; bytes: number; mtime: number }[]) {
    const dir = join(root, name);
    await mkdir(join(dir, 'files'), { recursive: true });
    for (const f of files) {
      const path = join(dir, 'files', `ring-${f.epoch}.pcap`);
      await writeFile(path, '');
      await truncate(path, f.bytes);
      await utimes(path, f.mtime, f.mtime);
    }
    return dir;
  }

  it('refuses a LookbackSeconds with leading zeros, in a report that is still JSON', () => {
    // bash arithmetic would read 060 as octal; the document's pattern refuses it too.
    const report = runLookback({
      SSM_LookbackSeconds: '060',
      SSM_RingDirectory: `${root}/absent`,
      SSM_WorkDir: root,
    });
    expect(report.status).toBe('failed');
    expect(report.requestedSeconds).toBe(0);
    expect(report.errors).toEqual(['LookbackSeconds does not match its allowed pattern']);
  });

  it('selects and stages a window of more than 2^31 bytes (sums never in exponent form)', async () => {
    const now = Math.floor(Date.now() / 1000);
    // Sparse files: 2.2 GB in the window, no disk used.
    const dir = await ring('big', [
      { epoch: now - 20, bytes: 1_100_000_000, mtime: now - 10 },
      { epoch: now - 10, bytes: 1_100_000_000, mtime: now - 1 },
    ]);
    const run = runStep(
      { SSM_LookbackSeconds: '30', SSM_RingDirectory: dir, SSM_WorkDir: root },
      `tl_lb_freeze ${INSTANCE} "" || tl_lb_err "the look-back freeze failed unexpectedly"
printf 'ERRORS=%s\\n' "$TL_LB_ERRORS"
printf 'STATUS=%s\\n' "$TL_LB_STATUS"
printf '%s' "$TL_LB_PENDING" | awk '{ print "PENDING=" $3 }'`,
    );
    expect(run.stdout).toContain('ERRORS=\n');
    expect(run.stdout).toContain('STATUS=\n');
    expect(run.stdout).toContain(`PENDING=ring-${now - 20}.pcap\n`);
    expect(run.stdout).toContain(`PENDING=ring-${now - 10}.pcap\n`);
  });

  it('leaves out the open file and says so when tcpdump runs without its supervisor', async () => {
    const now = Math.floor(Date.now() / 1000);
    const dir = await ring('orphan', [
      { epoch: now - 8, bytes: 24, mtime: now - 4 },
      { epoch: now - 4, bytes: 24, mtime: now - 1 },
    ]);
    // A process the step takes for the ring's tcpdump (its comm is "tcpdump" and it writes this
    // ring's files), with no supervisor.
    const orphan = await fakeTcpdump(root, `${dir}/files/ring-%s.pcap`);
    try {
      await writeFile(join(dir, 'state.env'), `TCPDUMP_PID=${orphan.pid}\nROTATIONS=3\n`);
      const report = runLookback({
        SSM_LookbackSeconds: '30',
        SSM_RingDirectory: dir,
        SSM_WorkDir: root,
      });
      expect(report.ring).toBe('stopped');
      // The older empty file counts as covered; the one tcpdump holds open was left out.
      expect(report.silentFiles).toBe(1);
      expect(report.status).toBe('partial');
      expect(report.complete).toBe(false);
      expect(report.errors.join('\n')).toMatch(/supervisor is not running but its tcpdump is/);
    } finally {
      process.kill(-orphan.pid!, 'SIGKILL');
    }
  });

  it("does not take another tcpdump on a recycled pid for the ring's", async () => {
    const now = Math.floor(Date.now() / 1000);
    const dir = await ring('recycled', [
      { epoch: now - 8, bytes: 24, mtime: now - 4 },
      { epoch: now - 4, bytes: 24, mtime: now - 1 },
    ]);
    // The state names a pid that now belongs to a forward capture's tcpdump, not the ring's.
    const other = await fakeTcpdump(root, `${root}/capture/spool/capture-%s.pcap`);
    try {
      await writeFile(join(dir, 'state.env'), `TCPDUMP_PID=${other.pid}\nROTATIONS=3\n`);
      const report = runLookback({
        SSM_LookbackSeconds: '30',
        SSM_RingDirectory: dir,
        SSM_WorkDir: root,
      });
      expect(report.ring).toBe('stopped');
      // Both files are closed, so both spans are covered; nothing was left out.
      expect(report.silentFiles).toBe(2);
      expect(report.errors.join('\n')).not.toMatch(/tcpdump/);
    } finally {
      process.kill(-other.pid!, 'SIGKILL');
    }
  });
});
