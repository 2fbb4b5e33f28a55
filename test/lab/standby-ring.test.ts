import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type NetnsHost, Topology } from '../../shared/lab/netns.ts';
import type { SsmCommandDocument } from '../../shared/lab/ssm-agent.ts';
import { packagedStandbyDocument } from '../../shared/standby/document.ts';
import { runStandby } from '../../shared/standby/lab-harness.ts';
import { fakeTcpdump, labCanRun } from '../support/lab.ts';

const TOOLS = ['tcpdump', 'ip', 'python3', 'setsid', 'ionice', 'flock'];
const canRun = labCanRun('standby lab test', TOOLS);

const HOST = '10.204.2.1';
const PEER = '10.204.2.2';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Alive and not a zombie (an orphan's parent here may be slow to reap it). */
function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] !== 'Z';
  } catch {
    return false;
  }
}

/**
 * The standby document run for real in a namespace (no systemd there, so the supervisor mode):
 * it survives a tcpdump crash, refuses to start below its disk threshold, is safe to start and
 * stop twice, and stop removes what it installed.
 */
describe.runIf(canRun)('standby ring supervisor, for real', () => {
  const topology = new Topology('tlring');
  const instanceId = 'i-0c1d2e3f4a5b60718';
  const root = `/tmp/tapline-sbtest-${randomBytes(4).toString('hex')}`;
  const ring = `${root}/ring`;
  let host: NetnsHost;
  let peer: NetnsHost;
  let document: SsmCommandDocument;

  const standby = (parameters: Record<string, string>) =>
    runStandby({
      document,
      host,
      instanceId,
      parameters: {
        RingDirectory: ring,
        Interface: 'ring0',
        RotateSeconds: '2',
        RetentionMinutes: '1',
        ExpectedMbps: '1',
        CapMegabytes: '4',
        MinFreeMegabytes: '1',
        ...parameters,
      },
    });

  async function ping(count: number) {
    await peer.exec(
      'python3',
      [
        '-c',
        `import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(${count}):
    s.sendto(b'tapline-standby-test', ('${HOST}', 9))
    time.sleep(0.05)`,
      ],
      { timeoutMs: 20_000 },
    );
  }

  beforeAll(async () => {
    document = await packagedStandbyDocument();
    host = await topology.addHost('sbh');
    peer = await topology.addHost('sbp');
    await topology.link({
      a: { ns: host.name, ifname: 'ring0', address: `${HOST}/24` },
      b: { ns: peer.name, ifname: 'eth0', address: `${PEER}/24` },
    });
  });

  afterAll(async () => {
    if (document && host) {
      await standby({ Action: 'stop', KeepFiles: 'false' }).catch(() => undefined);
    }
    await topology.destroy();
    await rm(root, { recursive: true, force: true });
  });

  it('refuses to start below the disk threshold and leaves nothing running', async () => {
    const refused = await standby({ Action: 'start', MinFreeMegabytes: '9999999' });
    expect(refused.run.exitCode).toBe(3);
    expect(refused.report.status).toBe('refused');
    expect(refused.report.error).toMatch(/MB free .*MinFreeMegabytes \(9999999 MB\)/);
    const status = await standby({ Action: 'status' });
    expect(status.report.running).toBe(false);
    expect(status.report.pid).toBeNull();
    expect(existsSync(join(ring, 'supervisor.pid'))).toBe(false);
  });

  it('refuses a filter tcpdump rejects and an interface that does not exist', async () => {
    const badFilter = await standby({ Action: 'start', Filter: 'port 99999999' });
    expect(badFilter.run.exitCode).toBe(3);
    expect(badFilter.report.error).toMatch(/tcpdump rejected the filter/);
    const badInterface = await standby({ Action: 'start', Interface: 'nosuch0' });
    expect(badInterface.run.exitCode).toBe(3);
    expect(badInterface.report.error).toMatch(/interface nosuch0 does not exist/);
    expect((await standby({ Action: 'status' })).report.running).toBe(false);
  });

  it('survives a tcpdump crash: the supervisor restarts it and counts the restart', {
    timeout: 90_000,
  }, async () => {
    const started = await standby({ Action: 'start', Filter: 'udp port 9' });
    expect(started.run.exitCode, started.run.stderr).toBe(0);
    expect(started.report.status).toBe('started');
    expect(started.report.restarts).toBe(0);
    const firstTcpdump = started.report.tcpdumpPid!;
    const supervisor = started.report.pid!;
    expect(processAlive(firstTcpdump)).toBe(true);
    // tcpdump runs without root, niced, with the filter from the file.
    const statusLine = await readFile(`/proc/${firstTcpdump}/status`, 'utf8');
    const uid = Number(/^Uid:\s+(\d+)/m.exec(statusLine)![1]);
    expect(uid).not.toBe(0);
    const cmdline = (await readFile(`/proc/${firstTcpdump}/cmdline`, 'utf8')).split('\0');
    expect(cmdline).toContain('-F');
    expect(cmdline).not.toContain('-z');
    expect(cmdline.join(' ')).not.toContain('udp port 9');
    const procStat = await readFile(`/proc/${firstTcpdump}/stat`, 'utf8');
    const nice = Number(procStat.slice(procStat.lastIndexOf(')') + 2).split(' ')[16]);
    expect(nice).toBe(10);

    // Starting again with the same settings is a no-op.
    const again = await standby({ Action: 'start', Filter: 'udp port 9' });
    expect(again.run.exitCode).toBe(0);
    expect(again.report.status).toBe('already-running');
    expect(again.report.pid).toBe(supervisor);
    expect(again.report.tcpdumpPid).toBe(firstTcpdump);

    await ping(10);
    process.kill(firstTcpdump, 'SIGKILL');
    let status = (await standby({ Action: 'status' })).report;
    for (let i = 0; i < 40 && !(status.tcpdumpPid && status.tcpdumpPid !== firstTcpdump); i++) {
      await sleep(250);
      status = (await standby({ Action: 'status' })).report;
    }
    expect(status.running).toBe(true);
    expect(status.state).toBe('running');
    expect(status.pid).toBe(supervisor);
    expect(status.restarts).toBe(1);
    expect(status.tcpdumpPid).not.toBe(firstTcpdump);
    expect(processAlive(status.tcpdumpPid!)).toBe(true);
    const log = await readFile(join(ring, 'supervisor.log'), 'utf8');
    expect(log).toMatch(/tcpdump exited with status 137.*restart 1 in 1 s/);

    // The restarted tcpdump records: traffic after the crash lands in a file opened after it,
    // which the next rotation (a packet after RotateSeconds; the kernel hands packets over within
    // about a second) closes with the packets in it.
    const before = (await readdir(join(ring, 'files'))).sort();
    await sleep(2200);
    await ping(10);
    let written = 0;
    let listing = '';
    for (let attempt = 0; attempt < 8 && written <= 24; attempt++) {
      await sleep(1200);
      await ping(1);
      const after = (await readdir(join(ring, 'files'))).sort();
      const closed = after.filter((n) => n > before.at(-1)!).slice(0, -1);
      const sizes = await Promise.all(
        closed.map(async (n) => (await stat(join(ring, 'files', n))).size),
      );
      written = Math.max(0, ...sizes);
      listing = after.join(' ');
    }
    expect(written, listing).toBeGreaterThan(24);
  });

  it('stops cleanly, twice, and removes what it installed', async () => {
    const running = await standby({ Action: 'status' });
    const supervisor = running.report.pid!;
    const tcpdump = running.report.tcpdumpPid!;
    expect(running.report.running).toBe(true);
    const stopped = await standby({ Action: 'stop', KeepFiles: 'true' });
    expect(stopped.report.status).toBe('stopped');
    expect(processAlive(supervisor)).toBe(false);
    expect(processAlive(tcpdump)).toBe(false);
    // Files kept: the last file was closed cleanly by SIGINT (a complete pcap header at least).
    const kept = (await readdir(join(ring, 'files'))).filter((n) => n.startsWith('ring-'));
    expect(kept.length).toBeGreaterThan(0);
    const again = await standby({ Action: 'stop', KeepFiles: 'false' });
    expect(again.report.status).toBe('not-running');
    expect(existsSync(ring)).toBe(false);
    const absent = await standby({ Action: 'status' });
    expect(absent.report.status).toBe('absent');
  });

  it('outlives a storm of signals, and stops on stop.request when a SIGTERM is lost', {
    timeout: 90_000,
  }, async () => {
    // bash parses a trap's text when the signal lands; landing while the loop parses a $(...) at
    // run time lost the trap or ended the supervisor with a syntax error (CI: a look-back's one
    // SIGUSR1 left tcpdump running with nothing pruning the ring). Older steps still send SIGUSR1.
    const started = await standby({ Action: 'start' });
    expect(started.report.status).toBe('started');
    const supervisor = started.report.pid!;
    const tcpdump = started.report.tcpdumpPid!;
    for (let i = 0; i < 3000; i++) {
      process.kill(supervisor, 'SIGUSR1');
      if (i % 5 === 0) await sleep(1);
    }
    await ping(20);
    const after = await standby({ Action: 'status' });
    expect(after.report.running).toBe(true);
    expect(after.report.pid).toBe(supervisor);
    expect(after.report.tcpdumpPid).toBe(tcpdump);
    expect(after.report.restarts).toBe(0);
    expect(await readFile(join(ring, 'supervisor.log'), 'utf8')).not.toMatch(
      /exited unexpectedly|syntax|unexpected EOF/,
    );

    // A rotation request file holding junk besides a token: only the token is answered (nothing
    // of the rest reaches the answers), and the ring keeps running.
    const token = `${(Date.now() / 1000).toFixed(6)}-4242`;
    await writeFile(
      join(ring, 'rotate.request'),
      `$(touch /tmp/tapline-pwned)\n../../etc/passwd 1 2\n${'9'.repeat(5000)}\n${token}\n`,
    );
    let answers = '';
    for (let i = 0; i < 300 && !answers.includes(`${token} `); i++) {
      await sleep(100);
      answers = await readFile(join(ring, 'rotations.log'), 'utf8').catch(() => '');
    }
    expect(answers.trim().split('\n')).toEqual([
      expect.stringMatching(new RegExp(`^${token} 1 [1-9][0-9]+$`)),
    ]);
    expect(existsSync('/tmp/tapline-pwned')).toBe(false);
    expect(processAlive(supervisor)).toBe(true);

    // The stop action leaves stop.request besides its SIGTERM: the file alone stops the ring, with
    // tcpdump stopped cleanly and the state saying so.
    await writeFile(join(ring, 'stop.request'), '');
    for (let i = 0; i < 50 && processAlive(supervisor); i++) await sleep(100);
    expect(processAlive(supervisor)).toBe(false);
    expect(processAlive(tcpdump)).toBe(false);
    expect(existsSync(join(ring, 'supervisor.pid'))).toBe(false);
    expect(existsSync(join(ring, 'stop.request'))).toBe(false);
    const state = JSON.parse(await readFile(join(ring, 'state.json'), 'utf8'));
    expect(state.state).toBe('stopped');
    expect(await readFile(join(ring, 'supervisor.log'), 'utf8')).toMatch(/supervisor stopped\n$/);
    const status = await standby({ Action: 'status' });
    expect(status.report.running).toBe(false);
  });

  it('stops tcpdump and says so when the supervisor itself dies', async () => {
    // Nothing prunes the ring once its supervisor is gone, so a supervisor that ends unasked (a
    // shell error, or a signal it does not trap: SIGUSR2 here) takes tcpdump with it.
    const started = await standby({ Action: 'start' });
    expect(started.report.status).toBe('started');
    const supervisor = started.report.pid!;
    const tcpdump = started.report.tcpdumpPid!;
    process.kill(supervisor, 'SIGUSR2');
    for (let i = 0; i < 50 && (processAlive(supervisor) || processAlive(tcpdump)); i++) {
      await sleep(100);
    }
    expect(processAlive(supervisor)).toBe(false);
    expect(processAlive(tcpdump)).toBe(false);
    const status = await standby({ Action: 'status' });
    expect(status.report.running).toBe(false);
    expect(status.report.state).toBe('failed');
    const state = JSON.parse(await readFile(join(ring, 'state.json'), 'utf8'));
    expect(state.lastError).toMatch(/^supervisor exited unexpectedly \(status \d+\)$/);
    expect(await readFile(join(ring, 'supervisor.log'), 'utf8')).toMatch(
      /supervisor exited unexpectedly \(status \d+\); stopping tcpdump/,
    );
    // A start after it runs the ring again.
    const again = await standby({ Action: 'start' });
    expect(again.report.status).toBe('started');
    expect(again.report.pid).not.toBe(supervisor);
  });

  it('restarts a ring an older document started (another supervisor), keeping its files', async () => {
    const first = await standby({ Action: 'start' });
    expect(['started', 'already-running']).toContain(first.report.status);
    // What an older document left: its settings without this supervisor's hash (its own script).
    const env = await readFile(join(ring, 'standby.env'), 'utf8');
    expect(env).toMatch(/^CONF_SUPERVISOR_SHA=[0-9a-f]{16}$/m);
    await writeFile(join(ring, 'standby.env'), env.replace(/^CONF_SUPERVISOR_SHA=.*\n/m, ''));
    const again = await standby({ Action: 'start' });
    expect(again.report.status).toBe('started');
    expect(again.report.pid).not.toBe(first.report.pid);
    expect(again.run.stderr).toContain('restarting it (files kept)');
    const same = await standby({ Action: 'start' });
    expect(same.report.status).toBe('already-running');
  });

  it('never signals another tcpdump that took the pid its state names', async () => {
    const started = await standby({ Action: 'start' });
    expect(['started', 'already-running']).toContain(started.report.status);
    const stopped = await standby({ Action: 'stop', KeepFiles: 'true' });
    expect(stopped.report.status).toBe('stopped');
    // The ring's tcpdump is gone and its pid now belongs to a forward capture's tcpdump.
    const other = await fakeTcpdump(root, `${root}/capture/spool/capture-%s.pcap`);
    try {
      const state = await readFile(join(ring, 'state.env'), 'utf8');
      await writeFile(
        join(ring, 'state.env'),
        state.replace(/^TCPDUMP_PID=.*$/m, `TCPDUMP_PID=${other.pid}`),
      );
      const status = await standby({ Action: 'status' });
      expect(status.report.tcpdumpPid).toBeNull();
      const again = await standby({ Action: 'stop', KeepFiles: 'true' });
      expect(again.report.status).toBe('not-running');
      expect(processAlive(other.pid!)).toBe(true);
    } finally {
      process.kill(-other.pid!, 'SIGKILL');
    }
  });
});
