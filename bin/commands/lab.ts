import type { Command } from 'commander';
import { type LabReport, runLab } from '../../shared/lab/run-lab.ts';
import { humanTime, table } from '../output.ts';

export function renderLabReport(r: LabReport): string {
  const lines: string[] = ['', 'Tapline lab report', ''];
  lines.push(
    table(
      ['STEP', 'OK', 'TIME', 'DETAIL'],
      r.steps.map((s) => [
        s.name,
        s.ok ? 'ok' : 'FAILED',
        `${(s.ms / 1000).toFixed(1)}s`,
        s.detail,
      ]),
    ),
  );
  if (r.finding)
    lines.push(`finding   ${r.finding.rule} (${r.finding.severity}) ${r.finding.fingerprint}`);
  if (r.captureId) lines.push(`capture   ${r.captureId} on ${r.host?.instanceId} — ${r.host?.why}`);
  lines.push(`probes to port 0 sent before the detector fired: ${r.probesBeforeDetection}`, '');
  if (r.files.length > 0) {
    lines.push(
      table(
        ['FILE', 'FROM', 'TIME RANGE', 'SHA-256 (verified)', 'INTEGRITY', 'PORT-0 PKTS'],
        r.files.map((f) => [
          f.key.split('/').at(-1),
          f.lookback ? 'look-back' : 'forward',
          `${humanTime(f.start)} – ${humanTime(f.end)}`,
          `${f.sha256.slice(0, 16)}… ${f.verified ? 'yes' : 'NO'}`,
          f.integrity,
          f.portZeroPackets,
        ]),
      ),
    );
    lines.push(
      `results   ${[...new Set(r.files.map((f) => f.resultsAt))].join('\n          ')}`,
      '',
    );
  }
  if (r.conversations.length > 0) {
    const shown = [...r.conversations]
      .sort((a, b) => Number(b.portZero) - Number(a.portZero))
      .slice(0, 25);
    lines.push(
      table(
        ['', 'PROTO', 'A', 'B', 'PACKETS', 'FROM'],
        shown.map((c) => [
          c.portZero ? 'PORT 0' : '',
          c.protocol,
          c.a,
          c.b,
          c.packets,
          c.lookback ? 'look-back' : 'forward',
        ]),
      ),
    );
    if (r.conversations.length > shown.length)
      lines.push(`(${r.conversations.length - shown.length} more conversations)`);
  }
  lines.push(r.ok ? 'LAB PASSED: every step held.' : 'LAB FAILED: see the failed step above.');
  return `${lines.join('\n')}\n`;
}

export function register(program: Command): void {
  program
    .command('lab')
    .description(
      'run the whole pipeline on this Linux machine (root): namespaces, moto, real tcpdump, real handlers',
    )
    .option('--json', 'print the report as JSON')
    .option('--capture-seconds <n>', 'forward capture length', '12')
    .action(async (options: { json?: boolean; captureSeconds: string }) => {
      const controller = new AbortController();
      const interrupt = () => {
        process.stderr.write('\ntapline lab: interrupted, cleaning up…\n');
        controller.abort();
      };
      process.once('SIGINT', interrupt);
      process.once('SIGTERM', interrupt);
      const report = await runLab({
        log: (line) => process.stderr.write(`${line}\n`),
        captureSeconds: Number(options.captureSeconds),
        signal: controller.signal,
      });
      process.off('SIGINT', interrupt);
      process.off('SIGTERM', interrupt);
      process.stdout.write(options.json ? `${JSON.stringify(report)}\n` : renderLabReport(report));
      process.exitCode = report.ok ? 0 : controller.signal.aborted ? 130 : 1;
    });
}
