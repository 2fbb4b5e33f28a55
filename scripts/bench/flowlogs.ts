// `npm run bench flowlogs`: flow-log detection throughput (gzip file → findings) next to
// `zcat FILE | wc -l` on the same generated 2-million-record file, in the same run.
// The input is generated on demand into bench-data/ (gitignored) and reused when present.
import { spawnSync } from 'node:child_process';
import { createReadStream, createWriteStream, existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { createGzip } from 'node:zlib';
import { DEFAULT_FIELDS } from '../../shared/flowlogs/format.ts';
import { FlowScanner } from '../../shared/flowlogs/scanner.ts';
import { GZIP_INPUT_PIECE, scanStream } from '../../shared/flowlogs/sources/s3.ts';
import { loadRules } from '../../shared/rules/config.ts';
import { RuleEngine } from '../../shared/rules/engine.ts';
import { seededRandom } from '../lib/seeded-random.ts';

const RECORDS = Number(process.env.FLOWLOG_BENCH_RECORDS ?? 2_000_000);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const dir = join(root, 'bench-data');
const file = join(dir, `flowlogs-v2-${RECORDS}.log.gz`);

/**
 * A VPC's worth of traffic in the default v2 format, as S3 delivers it (header line, gzip):
 * in per-interface runs as VPC Flow Logs delivers them: ~4,000 internal hosts, each talking to 1–6 peers (internal or among ~5,000 external
 * addresses) on common service ports, both directions of each flow, ~4% inbound REJECTs, some NODATA/SKIPDATA,
 * plus a few anomalies (port-0 probes, a port scan, a host sweep) so every rule does work.
 */
async function generate(): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const r = seededRandom(20261123);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const internal = Array.from(
    { length: 4000 },
    (_, i) => `10.${Math.floor(i / 250)}.${(i % 250) + 1}.${1 + Math.floor(r() * 250)}`,
  );
  const external = Array.from(
    { length: 5000 },
    () =>
      `${pick([3, 13, 18, 34, 52, 54, 104, 151, 172, 185, 198])}.${Math.floor(r() * 256)}.${Math.floor(r() * 256)}.${1 + Math.floor(r() * 254)}`,
  );
  const services = [443, 443, 443, 80, 53, 22, 3306, 5432, 8080, 6379] as const;
  const enis = Array.from(
    { length: 500 },
    (_, i) => `eni-${(0x0a000000 + i * 7919).toString(16).padStart(17, '0')}`,
  );
  // each host talks to a handful of peers, as real workloads do
  const conversations: Array<[string, string, number, number]> = [];
  const blocks: Array<[number, number]> = [];
  for (const client of internal) {
    blocks.push([conversations.length, 0]);
    const peers = 1 + Math.floor(r() * 6);
    for (let i = 0; i < peers; i++) {
      const port = pick(services);
      conversations.push([
        client,
        r() < 0.6 ? pick(external) : pick(internal),
        port,
        port === 53 ? 17 : 6,
      ]);
    }
    blocks[blocks.length - 1]![1] = conversations.length - blocks[blocks.length - 1]![0];
  }
  const gz = createGzip({ level: 6 });
  const out = createWriteStream(file);
  const done = pipeline(gz, out);
  gz.write(`${DEFAULT_FIELDS.join(' ')}\n`);
  const t0 = 1_763_880_000;
  let batch: string[] = [];
  const flush = async () => {
    if (!gz.write(`${batch.join('\n')}\n`)) await new Promise((res) => gz.once('drain', res));
    batch = [];
  };
  let n = 0;
  // VPC Flow Logs deliver each interface's records together: runs of one host's flows
  let run = 0;
  let block: [number, number] = blocks[0]!;
  const line = (
    eni: string,
    src: string,
    dst: string,
    sp: number | string,
    dp: number | string,
    proto: number | string,
    pk: number | string,
    by: number | string,
    start: number,
    action: string,
    status = 'OK',
  ) => {
    batch.push(
      `2 123456789012 ${eni} ${src} ${dst} ${sp} ${dp} ${proto} ${pk} ${by} ${start} ${start + 60} ${action} ${status}`,
    );
    n += 1;
  };
  while (n < RECORDS) {
    const start = t0 + Math.floor(r() * 600);
    const eni = pick(enis);
    const roll = r();
    if (roll < 0.0005) {
      line(eni, '-', '-', '-', '-', '-', '-', '-', start, '-', r() < 0.8 ? 'NODATA' : 'SKIPDATA');
    } else if (roll < 0.04) {
      line(
        eni,
        pick(external),
        pick(internal),
        1024 + Math.floor(r() * 64000),
        pick([22, 23, 445, 3389, 8443]),
        6,
        1,
        40,
        start,
        'REJECT',
      );
    } else if (roll < 0.0402) {
      line(
        eni,
        pick(external),
        pick(internal),
        40000 + Math.floor(r() * 100),
        0,
        pick([6, 17]),
        1,
        60,
        start,
        'REJECT',
      );
    } else if (roll < 0.0404) {
      line(
        eni,
        '203.0.113.66',
        internal[7]!,
        51000,
        1 + Math.floor(r() * 1024),
        6,
        1,
        44,
        start,
        'REJECT',
      );
    } else if (roll < 0.0406) {
      line(
        eni,
        internal[9]!,
        pick(internal),
        52000 + Math.floor(r() * 100),
        22,
        6,
        2,
        120,
        start,
        'ACCEPT',
      );
    } else {
      if (run === 0) {
        block = blocks[Math.floor(r() * r() * blocks.length)]!;
        run = 10 + Math.floor(r() * 90);
      }
      run -= 1;
      const [client, server, port, proto] = conversations[block[0] + Math.floor(r() * block[1])]!;
      const eph = 32768 + Math.floor(r() * 28000);
      const pk = 1 + Math.floor(r() * 200);
      const by = pk * (40 + Math.floor(r() * 1400));
      if (r() < 0.5) line(eni, client, server, eph, port, proto, pk, by, start, 'ACCEPT');
      else line(eni, server, client, port, eph, proto, pk, by, start, 'ACCEPT');
    }
    if (batch.length >= 4096) await flush();
  }
  if (batch.length > 0) await flush();
  gz.end();
  await done;
}

function time<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = process.hrtime.bigint();
  return fn().then((v) => [v, Number(process.hrtime.bigint() - t) / 1e9]);
}

async function detectFile(): Promise<{
  records: number;
  findings: number;
  lines: number;
  parser: string;
}> {
  // the same path as `tapline detect FILE` and the Lambda (S3 body): stream → gunzip (zlib on
  // the thread pool) → scanner → rules
  const engine = new RuleEngine(loadRules());
  const scanner = new FlowScanner(engine, { header: 'auto' });
  await scanStream(createReadStream(file, { highWaterMark: GZIP_INPUT_PIECE }), scanner);
  const stats = scanner.end();
  const findings = engine.finish();
  return {
    records: stats.records,
    findings: findings.length,
    lines: stats.lines,
    parser: scanner.parser,
  };
}

/** `zcat FILE | wc -l`: wall seconds, and CPU seconds of both processes (bash `time`). */
function zcatWc(): { lines: number; seconds: number; cpu: number } {
  const t = process.hrtime.bigint();
  const res = spawnSync('bash', ['-c', `TIMEFORMAT='%U %S'; time (zcat '${file}' | wc -l)`], {
    encoding: 'utf8',
  });
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  if (res.status !== 0) throw new Error(`zcat | wc -l failed: ${res.stderr}`);
  const [user = 0, sys = 0] = res.stderr.trim().split(/\s+/).slice(-2).map(Number);
  return { lines: Number(res.stdout.trim()), seconds, cpu: user + sys };
}

if (!existsSync(file)) {
  console.log(`generating ${RECORDS.toLocaleString('en')} flow-log records → ${file}`);
  const [, s] = await time(generate);
  console.log(`  generated in ${s.toFixed(1)} s`);
}
const size = statSync(file).size;
console.log(`input: ${file} (${(size / 1048576).toFixed(1)} MiB gzip)`);

const runs = Number(process.env.FLOWLOG_BENCH_RUNS ?? 5);
const ours: number[] = [];
const scanCpu: number[] = [];
const zcat: number[] = [];
const zcatCpu: number[] = [];
let result = { records: 0, findings: 0, lines: 0, parser: '' };
let zLines = 0;
for (let i = 0; i < runs; i++) {
  const z = zcatWc();
  zcat.push(z.seconds);
  zcatCpu.push(z.cpu);
  zLines = z.lines;
  // CPU of the scanning thread alone (parse + rules; zlib inflates on the thread pool)
  const cpu0 = process.threadCpuUsage();
  const [res, s] = await time(detectFile);
  const cpu = process.threadCpuUsage(cpu0);
  scanCpu.push((cpu.user + cpu.system) / 1e6);
  ours.push(s);
  result = res;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const zcatS = median(zcat);
const zcatRate = zLines / zcatS;
const oursS = median(ours);
const oursRate = result.lines / oursS;
console.log(
  `records: ${result.records.toLocaleString('en')} (${result.lines.toLocaleString('en')} lines), findings: ${result.findings}, parser: ${result.parser}`,
);
console.log(
  `tapline detect (gz → findings):  ${(oursRate / 1e6).toFixed(2)} M records/s (${oursS.toFixed(3)} s, median of ${runs})`,
);
console.log(
  `zcat FILE | wc -l:               ${(zcatRate / 1e6).toFixed(2)} M records/s (${zcatS.toFixed(3)} s, median of ${runs}; CPU ${median(zcatCpu).toFixed(2)} s)`,
);
// each run pairs one zcat with one of ours, back to back: the ratio of each pair compares the
// two under the same VM conditions, which drift between pairs on this shared machine
const pairRatios = ours.map((s, i) => zcat[i]! / zLines / (s / result.lines));
console.log(
  `ratio tapline / zcat:            ${(oursRate / zcatRate).toFixed(2)} (of the medians); per back-to-back pair: median ${median(pairRatios).toFixed(2)}, range ${Math.min(...pairRatios).toFixed(2)}–${Math.max(...pairRatios).toFixed(2)}`,
);
const cpuS = median(scanCpu);
console.log(
  `scanning thread (parse + rules): ${cpuS.toFixed(2)} CPU s, ${(result.lines / cpuS / 1e6).toFixed(2)} M records per CPU-second (one core)`,
);
console.log(`peak RSS: ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
