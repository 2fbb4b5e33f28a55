import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { asyncBufferFromFile } from 'hyparquet';
import { detectBatch, type FlowBatch } from '../../shared/detection/detect.ts';
import type { Finding } from '../../shared/detection/finding.ts';
import { isTaplineError, MalformedEventError } from '../../shared/errors.ts';
import { resolveFlowLogFormat } from '../../shared/flowlogs/format.ts';
import { CUT_BY_DAMAGE } from '../../shared/flowlogs/scanner.ts';
import { scanParquetBuffer } from '../../shared/flowlogs/sources/parquet.ts';
import { GZIP_INPUT_PIECE, isParquetKey, scanStream } from '../../shared/flowlogs/sources/s3.ts';
import { loadRules, loadRulesFile } from '../../shared/rules/config.ts';
import { protocolName } from '../../shared/rules/engine.ts';

interface DetectOptions {
  format?: string;
  rules?: string;
  json?: boolean;
}

/** The JSON line for one finding: the contract fields first, then the rest. */
export function findingLine(f: Finding): Record<string, unknown> {
  return {
    rule: f.rule,
    severity: f.severity,
    fingerprint: f.fingerprint,
    srcaddr: f.srcaddr,
    dstaddr: f.dstaddr,
    srcport: f.srcport,
    dstport: f.dstport,
    protocol: f.protocol,
    records: f.records,
    start: f.start,
    end: f.end,
    capture: { auto: f.autoCapture, ...f.capture },
    summary: f.summary,
    packets: f.packets,
    bytes: f.bytes,
    distinct: f.distinct,
    occurrences: f.occurrences,
    source: f.source,
    ...(f.sourceDamaged !== undefined ? { sourceDamaged: f.sourceDamaged } : {}),
    evidence: f.evidence,
  };
}

function table(findings: Finding[], tty: boolean): string {
  const bold = (s: string) => (tty ? `\x1b[1m${s}\x1b[0m` : s);
  const rows = findings.map((f) => [
    f.severity,
    f.rule,
    f.srcaddr ?? '*',
    f.dstaddr ?? '*',
    f.protocol === null ? '' : protocolName(f.protocol),
    String(f.records),
    `${f.start.slice(0, 19)}Z`,
    f.autoCapture ? 'auto' : 'suggested',
    f.summary,
  ]);
  const head = [
    'SEVERITY',
    'RULE',
    'SRC',
    'DST',
    'PROTO',
    'RECORDS',
    'START',
    'CAPTURE',
    'SUMMARY',
  ];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) =>
    r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return [bold(fmt(head)), ...rows.map(fmt)].join('\n');
}

export function register(program: Command): void {
  program
    .command('detect')
    .description(
      'Run the flow-log rules on a local VPC Flow Logs file (text, gzip or Parquet; - for stdin)',
    )
    .argument('<file>', 'flow-log file, or - for standard input')
    .option(
      '--format <format>',
      'flow-log format, as AWS LogFormat or plain field names (version account-id …); a header line in the file wins',
    )
    .option(
      '--rules <file>',
      'JSON rules override merged over the defaults (same shape as shared/rules/default-rules.json)',
    )
    .option('--json', 'one JSON finding per line')
    .action(async (file: string, options: DetectOptions) => {
      let rules: ReturnType<typeof loadRules>;
      let format: ReturnType<typeof resolveFlowLogFormat>;
      try {
        rules = options.rules
          ? loadRulesFile(options.rules, process.env.RULES_OVERRIDE)
          : loadRules(process.env.RULES_OVERRIDE);
        format = resolveFlowLogFormat(options.format ?? process.env.FLOW_LOG_FORMAT);
      } catch (error) {
        process.stderr.write(`tapline: ${(error as Error).message}\n`);
        process.exitCode = 2;
        return;
      }
      if (file !== '-') {
        try {
          const s = await stat(file);
          if (!s.isFile()) throw new Error('not a regular file');
        } catch (error) {
          throw new MalformedEventError(`Cannot read ${file}: ${(error as Error).message}`);
        }
      }
      const batch: FlowBatch = {
        source: file === '-' ? 'stdin' : file,
        header: 'auto',
        async feed(scanner) {
          if (file !== '-' && isParquetKey(file)) {
            await scanParquetBuffer(await asyncBufferFromFile(file), scanner);
            return;
          }
          const input =
            file === '-'
              ? process.stdin
              : createReadStream(file, { highWaterMark: GZIP_INPUT_PIECE });
          await scanStream(input as AsyncIterable<Buffer>, scanner);
        },
      };
      let result: Awaited<ReturnType<typeof detectBatch>>;
      try {
        result = await detectBatch(batch, { rules }, format);
      } catch (error) {
        if (isTaplineError(error)) throw error;
        // zlib and stream errors: the input is damaged, not the environment
        throw new MalformedEventError(`Cannot read ${file}: ${(error as Error).message}`);
      }
      const { findings, report } = result;
      if (options.json) {
        for (const f of findings) process.stdout.write(`${JSON.stringify(findingLine(f))}\n`);
      } else if (findings.length > 0) {
        process.stdout.write(`${table(findings, Boolean(process.stdout.isTTY))}\n`);
      } else {
        process.stdout.write('no findings\n');
      }
      const s = report.stats;
      process.stderr.write(
        `tapline detect: ${s.records} records, ${s.nodata} NODATA, ${s.skipdata} SKIPDATA, ${s.malformed} malformed, ${findings.length} findings\n`,
      );
      for (const m of s.malformedSample) {
        process.stderr.write(`  malformed line ${m.line}: ${m.reason}: ${m.text}\n`);
      }
      if (report.engine.suppressedFindings > 0 || report.engine.untrackedKeys > 0) {
        process.stderr.write(
          `  limits reached: ${report.engine.suppressedFindings} findings suppressed, ${report.engine.untrackedKeys} keys untracked\n`,
        );
      }
      if (report.damaged) {
        // the findings above come from the records before the damage: say so, and fail
        const complete = s.lines - (s.malformedByReason[CUT_BY_DAMAGE] ?? 0);
        process.stderr.write(
          `tapline: ${report.error!.message}\n  the findings above come from the ${complete} complete lines before the damage\n`,
        );
        process.exitCode = 2;
        return;
      }
      process.exitCode = findings.length > 0 ? 1 : 0;
    });
}
