import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import type { SsmCommandDocument } from '../../shared/lab/ssm-agent.ts';

/**
 * tcpdump's packet counts, exactly as tcpdump 4.99 prints them (seen on this machine's tcpdump
 * 4.99.3 / libpcap 1.10.3): on SIGUSR1 one line with its name in front; on exit three lines of
 * their own; "packet" instead of "packets" when a count is 1 (its PLURAL_SUFFIX). Both documents
 * read these counts into the custody record (packetsCaptured, kernel drops), so a capture of one
 * packet must say 1, not "no counts".
 */
const ON_EXIT_ONE = '1 packet captured\n1 packet received by filter\n1 packet dropped by kernel\n';
const ON_EXIT_MANY =
  '3041 packets captured\n3043 packets received by filter\n2 packets dropped by kernel\n';
const ON_USR1 =
  'tcpdump: 20 packets captured, 40 packets received by filter, 0 packets dropped by kernel\n';
const ON_USR1_ONE =
  'tcpdump: 1 packet captured, 2 packets received by filter, 1 packet dropped by kernel\n';
const LISTENING =
  'tcpdump: listening on ring0, link-type EN10MB (Ethernet), snapshot length 262144 bytes\n';
// Past 2^31 (hours at 100k packets/s): mawk prints a computed number that large as 3e+09.
const ON_USR1_BIG =
  'tcpdump: 3000000000 packets captured, 3000000007 packets received by filter, 2147483648 packets dropped by kernel\n';
// libpcap 1.10 with ps_ifdrop: a line tcpdump adds that is not the kernel's drop count.
const IFDROP = '7 packets dropped by interface\n';

async function script(path: string): Promise<string> {
  const doc = parseYaml(
    await readFile(new URL(`../../ssm-documents/${path}`, import.meta.url), 'utf8'),
  ) as SsmCommandDocument;
  return doc.mainSteps.map((step) => step.inputs.runCommand.join('\n')).join('\n');
}

/** The lines from the one starting with `first` up to and including the one matching `last`. */
function slice(text: string, first: string, last: RegExp): string {
  const lines = text.split('\n');
  const from = lines.findIndex((l) => l.startsWith(first));
  expect(from, `no line starting with ${first}`).toBeGreaterThanOrEqual(0);
  const to = lines.findIndex((l, i) => i > from && last.test(l));
  expect(to, `no end for ${first}`).toBeGreaterThan(from);
  return lines.slice(from, to + 1).join('\n');
}

describe('the documents read tcpdump packet counts in every form tcpdump prints', () => {
  let dir: string;
  let supervisorCounts: string;
  let captureCounts: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tl-counts-'));
    supervisorCounts = slice(await script('tapline-standby.yml'), 'counts() {', /^}$/);
    captureCounts = slice(
      await script('tapline-capture.yml'),
      'PACKETS_CAPTURED=""',
      /^if \[ -z "\$PACKETS_DROPPED" \]/,
    );
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function supervisor(log: string): Promise<string> {
    await writeFile(join(dir, 'tcpdump.run.log'), log);
    const run = spawnSync('bash', ['-c', `RING=${dir}\n${supervisorCounts}\ncounts`], {
      encoding: 'utf8',
    });
    expect(run.status, run.stderr).toBe(0);
    return run.stdout.trim();
  }

  async function capture(log: string | undefined): Promise<string> {
    if (log === undefined) await rm(join(dir, 'tcpdump.log'), { force: true });
    else await writeFile(join(dir, 'tcpdump.log'), log);
    const run = spawnSync(
      'bash',
      [
        '-c',
        `set -euo pipefail\nERRS=""\nerr() { ERRS="$ERRS[$1]"; }\nRUN_DIR=${dir}\n${captureCounts}\necho "$PACKETS_CAPTURED $PACKETS_RECEIVED $PACKETS_DROPPED $ERRS"`,
      ],
      { encoding: 'utf8' },
    );
    expect(run.status, run.stderr).toBe(0);
    return run.stdout.trim();
  }

  it('standby supervisor: "CAPTURED RECEIVED DROPPED REPORTS", the newest of each', async () => {
    expect(await supervisor('')).toBe('0 0 0 0');
    expect(await supervisor(LISTENING)).toBe('0 0 0 0');
    expect(await supervisor(LISTENING + ON_USR1)).toBe('20 40 0 1');
    expect(await supervisor(LISTENING + ON_USR1_ONE)).toBe('1 2 1 1');
    expect(await supervisor(LISTENING + ON_USR1 + ON_USR1_ONE)).toBe('1 2 1 2');
    expect(await supervisor(LISTENING + ON_USR1 + ON_EXIT_MANY + IFDROP)).toBe('3041 3043 2 2');
    expect(await supervisor(LISTENING + ON_EXIT_ONE)).toBe('1 1 1 1');
    expect(await supervisor(LISTENING + ON_USR1_BIG)).toBe('3000000000 3000000007 2147483648 1');
  });

  it('capture document: one packet is 1, and only a log without counts is an error', async () => {
    expect(await capture(LISTENING + ON_EXIT_ONE)).toBe('1 1 1');
    expect(await capture(LISTENING + ON_EXIT_MANY + IFDROP)).toBe('3041 3043 2');
    expect(await capture(LISTENING + ON_USR1_BIG)).toBe('3000000000 3000000007 2147483648');
    expect(await capture(LISTENING)).toBe('null null null [tcpdump printed no packet counts]');
    expect(await capture(undefined)).toBe('null null null [tcpdump printed no packet counts]');
  });
});
