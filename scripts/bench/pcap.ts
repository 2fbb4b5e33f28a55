// `npm run bench pcap`: the decoder against the reference tools on ONE generated capture.
//
//  - input: bench-data/bench-1g.pcap (~1.08 GB, 108,000 TCP streams, 1.84 M packets), made on
//    demand by scripts/make-bench-pcap.ts (scapy template + fast replication), never committed;
//  - summary: `tapline summarize FILE --json` (the same core the processing job runs) vs
//    `cat FILE > /dev/null` from the page cache (ratio of throughputs) and vs
//    `tshark -q -z conv,tcp` (speed-up), with the peak RSS of each (/usr/bin/time);
//  - floor: a Node process that only reads the file through the summary's reader, decoding
//    nothing (start-up plus reads: what no decoder in Node can beat on this machine);
//  - carving: every TCP stream to its own pcap in one pass vs `tshark -Y tcp.stream==N -w`
//    measured on a sample of streams and extrapolated to all of them.
// Environment: PCAP_BENCH_FILE (another input), PCAP_BENCH_STREAMS (generator size),
// PCAP_BENCH_TSHARK_SAMPLES (default 3).
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');
const node = process.execPath;

if (process.argv[2] === '--read-only') {
  // the floor: a Node process that only reads the file the way the summary does (same reader,
  // same chunks), decoding nothing. No decoder in Node can finish faster than this.
  (await import('node:module')).enableCompileCache?.();
  const { readFileChunks } = await import('../../shared/pcap/file-source.ts');
  let bytes = 0;
  for await (const chunk of readFileChunks(process.argv[3]!)) bytes += chunk.length;
  process.stdout.write(`${bytes}\n`);
  process.exit(0);
}

if (process.argv[2] === '--child') {
  // measured child: the CLI's own code path, in a process of its own for a clean peak RSS.
  // Node's compile cache keeps the type-stripped, compiled modules between runs (~0.2 s of
  // CPU per start otherwise); bin/tapline can enable it the same way.
  const started = performance.now(); // since the process started: Node's own start-up
  (await import('node:module')).enableCompileCache?.();
  const { summarizeFile, summarizeJson } = await import('../../bin/commands/summarize.ts');
  const imported = performance.now();
  const [, , , file, carveDir] = process.argv;
  if (carveDir) {
    const r = await summarizeFile(file!, {
      carve: carveDir,
      progress: false,
      onConversations: () => {},
    });
    process.stdout.write(`${JSON.stringify({ streams: r.streams, carve: r.carve })}\n`);
  } else {
    // the document is written once the file is decoded: its first write ends the decoding
    let firstWrite = 0;
    const out = process.stdout;
    const write = out.write.bind(out) as (chunk: string) => boolean;
    out.write = ((chunk: string) => {
      if (firstWrite === 0) firstWrite = performance.now();
      return write(chunk);
    }) as typeof out.write;
    await summarizeJson(file!, { progress: false }, out); // = tapline summarize FILE --json
    const phasesFile = process.env.PCAP_BENCH_PHASES;
    if (phasesFile) {
      const ms = (a: number, b: number) => Math.round(b - a);
      writeFileSync(
        phasesFile,
        JSON.stringify({
          nodeStart: Math.round(started),
          imports: ms(started, imported),
          decode: ms(imported, firstWrite),
          output: ms(firstWrite, performance.now()),
        }),
      );
    }
  }
  process.exit(0);
}

/** Where one summary run's time went, in ms (from the measured child). */
interface Phases {
  nodeStart: number;
  imports: number;
  decode: number;
  output: number;
}

interface Run {
  seconds: number;
  /** user + system CPU seconds (less sensitive than wall time to other load on the box) */
  cpu: number;
  rssMb: number;
  stdout: string;
  /** The summary child's own phases, when it wrote them. */
  phases?: Phases;
}

/** Wall time from our clock, peak RSS from GNU time (%M, KiB) of the command itself. */
function measure(cmd: string, args: string[], stdoutTo?: string): Run {
  const timeFile = join(tmpdir(), `tapline-bench-time-${process.pid}`);
  const shell = `/usr/bin/time -f '%M %U %S' -o '${timeFile}' ${[cmd, ...args].map((a) => `'${a}'`).join(' ')}${
    stdoutTo ? ` > '${stdoutTo}'` : ''
  } 2>/dev/null`;
  const t0 = process.hrtime.bigint();
  const r = spawnSync('bash', ['-c', shell], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${cmd} failed (${r.status}): ${r.stderr}`);
  const [kb, user, sys] = readFileSync(timeFile, 'utf8')
    .trim()
    .split('\n')
    .pop()!
    .split(' ')
    .map(Number);
  return { seconds, cpu: user! + sys!, rssMb: kb! / 1024, stdout: r.stdout };
}

function best<R extends Run>(n: number, f: () => R): R {
  let b: R | undefined;
  for (let i = 0; i < n; i++) {
    const r = f();
    if (!b || r.seconds < b.seconds) b = r;
  }
  return b!;
}

const file = process.env.PCAP_BENCH_FILE ?? join(repo, 'bench-data', 'bench-1g.pcap');
if (!existsSync(file)) {
  mkdirSync(dirname(file), { recursive: true });
  console.log(`generating ${file} …`);
  const g = spawnSync(
    node,
    [join(repo, 'scripts', 'make-bench-pcap.ts'), file, process.env.PCAP_BENCH_STREAMS ?? '108000'],
    { stdio: 'inherit' },
  );
  if (g.status !== 0) process.exit(1);
}
const size = statSync(file).size;
const mb = size / 1e6;
console.log(`input: ${file} (${mb.toFixed(0)} MB)`);
console.log(`load average at start: ${readLoad()}`);

// page cache warm-up, then the reference read rate
measure('cat', [file], '/dev/null');
const cat = best(3, () => measure('cat', [file], '/dev/null'));
const phasesFile = join(tmpdir(), `tapline-bench-phases-${process.pid}.json`);
process.env.PCAP_BENCH_PHASES = phasesFile;
const ours = best(2, () => {
  const run = measure(node, [fileURLToPath(import.meta.url), '--child', file], '/dev/null');
  return { ...run, phases: JSON.parse(readFileSync(phasesFile, 'utf8')) as Phases };
});
rmSync(phasesFile, { force: true });
delete process.env.PCAP_BENCH_PHASES;
const floor = best(2, () =>
  measure(node, [fileURLToPath(import.meta.url), '--read-only', file], '/dev/null'),
);
console.log(`summary: ours ${ours.seconds.toFixed(2)} s, cat ${cat.seconds.toFixed(2)} s`);
const tshark = measure('tshark', ['-r', file, '-q', '-z', 'conv,tcp'], '/dev/null');
console.log(`tshark conv,tcp: ${tshark.seconds.toFixed(1)} s`);

// carving: all streams, one pass
const carveDir = join(repo, 'bench-data', `carve-${process.pid}`);
rmSync(carveDir, { recursive: true, force: true });
const carve = measure(node, [fileURLToPath(import.meta.url), '--child', file, carveDir]);
const carveInfo = JSON.parse(carve.stdout.trim()) as {
  streams: number;
  carve: { streamsCarved: number; piecesWritten: number };
};
const carvedFiles = readdirSync(carveDir).length;
// tshark per stream, on a sample spread over the file
const samples = Number(process.env.PCAP_BENCH_TSHARK_SAMPLES ?? 3);
const streams = carveInfo.streams;
const picks = Array.from({ length: samples }, (_, k) =>
  Math.floor(((k + 0.5) * streams) / samples),
);
let tsharkStreamSeconds = 0;
const agree: string[] = [];
for (const n of picks) {
  const out = join(carveDir, `tshark-${n}.pcap`);
  const r = measure('tshark', ['-r', file, '-Y', `tcp.stream==${n}`, '-w', out]);
  tsharkStreamSeconds += r.seconds;
  const mine = join(carveDir, `tcp-stream-${String(n).padStart(6, '0')}.pcap`);
  const count = (f: string) =>
    spawnSync('tshark', ['-r', f, '-T', 'fields', '-e', 'frame.len'], { encoding: 'utf8' })
      .stdout.trim()
      .split('\n')
      .join(',');
  agree.push(
    `stream ${n}: ${count(mine) === count(out) ? 'same frames as tshark' : 'DIFFERENT from tshark'}`,
  );
}
rmSync(carveDir, { recursive: true, force: true });
const perStream = tsharkStreamSeconds / samples;
const loop = perStream * streams;

const rate = (s: number) => `${(mb / s).toFixed(0)} MB/s`;
const line = (k: string, v: string, goal = '') =>
  console.log(`${k.padEnd(34)}${v.length >= 36 ? `${v}  ` : v.padEnd(36)}${goal}`.trimEnd());
console.log('');
line('cat FILE > /dev/null (page cache)', `${cat.seconds.toFixed(2)} s  ${rate(cat.seconds)}`);
line(
  'tapline summarize --json',
  `${ours.seconds.toFixed(2)} s  ${rate(ours.seconds)}  RSS ${ours.rssMb.toFixed(0)} MB`,
);
line(
  'tshark -q -z conv,tcp',
  `${tshark.seconds.toFixed(2)} s  ${rate(tshark.seconds)}  RSS ${tshark.rssMb.toFixed(0)} MB`,
);
line('  summary / cat throughput', (cat.seconds / ours.seconds).toFixed(3), 'goal ≥ 0.25');
line(
  '  summary speed-up vs tshark',
  `${(tshark.seconds / ours.seconds).toFixed(1)}×`,
  'goal ≥ 50×',
);
line('  summary peak RSS', `${ours.rssMb.toFixed(0)} MB`, 'goal ≤ 256 MB');
const phases = ours.phases;
if (phases) {
  const sec = (ms: number) => `${(ms / 1000).toFixed(2)}`;
  line(
    '  where its time went (s)',
    `node ${sec(phases.nodeStart)}, imports ${sec(phases.imports)}, read+decode ${sec(phases.decode)}, JSON ${sec(phases.output)}`,
    `(50× tshark: ${(tshark.seconds / 50).toFixed(2)} s in all)`,
  );
}
line(
  '  floor (Node, reading only)',
  `${floor.seconds.toFixed(2)} s (start-up, imports, the same reads; no decoding)`,
  `50× tshark leaves ${(tshark.seconds / 50 - floor.seconds).toFixed(2)} s to decode`,
);
line(
  '  CPU seconds (user+sys)',
  `cat ${cat.cpu.toFixed(2)}, ours ${ours.cpu.toFixed(2)}, tshark ${tshark.cpu.toFixed(1)}`,
  `tshark/ours ${(tshark.cpu / ours.cpu).toFixed(1)}×`,
);
line(
  'carve all streams (one pass)',
  `${carve.seconds.toFixed(2)} s (CPU ${carve.cpu.toFixed(1)})  ${carveInfo.carve.streamsCarved} streams, ${carvedFiles} files  RSS ${carve.rssMb.toFixed(0)} MB`,
);
line(
  `tshark -Y tcp.stream==N -w (×${samples})`,
  `${perStream.toFixed(1)} s/stream → ${streams} streams ≈ ${(loop / 3600).toFixed(1)} h`,
);
line('  carving speed-up vs tshark loop', `${(loop / carve.seconds).toFixed(0)}×`, 'goal ≥ 1000×');
line('  carving peak RSS', `${carve.rssMb.toFixed(0)} MB`, 'goal ≤ 256 MB');
for (const a of agree) console.log(`  ${a}`);
console.log(
  `load average at end: ${readLoad()} (2 cores, shared: absolute times vary; ratios are from one run)`,
);

function readLoad(): string {
  const r = spawnSync('cat', ['/proc/loadavg'], { encoding: 'utf8' });
  return r.stdout.split(' ').slice(0, 3).join(' ');
}
