import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { NetnsHost } from '../lab/netns.ts';
import { type DocumentRun, runCommandDocument, type SsmCommandDocument } from '../lab/ssm-agent.ts';
import { parseStandbyReport, type StandbyReport } from './reports.ts';

/**
 * Lab and test helpers for the standby ring: run the real standby document (as the SSM agent
 * would, through shared/lab/ssm-agent.ts), wrap the look-back step in a document that carries the
 * capture document's own parameter declarations, and watch the ring's size on disk.
 */

const RING_FILE = /^ring-[0-9]{9,11}\.pcap[0-9]*$/;

export interface StandbyRun {
  run: DocumentRun;
  report: StandbyReport;
}

export async function runStandby(options: {
  document: SsmCommandDocument;
  host?: NetnsHost | undefined;
  parameters: Record<string, string>;
  instanceId: string;
  region?: string;
}): Promise<StandbyRun> {
  const run = await runCommandDocument({
    document: options.document,
    parameters: options.parameters,
    host: options.host,
    instanceId: options.instanceId,
    region: options.region ?? 'us-east-1',
    timeoutMs: 60_000,
  });
  let report: StandbyReport;
  try {
    report = parseStandbyReport(run.stdout);
  } catch (error) {
    throw new Error(
      `standby ${options.parameters.Action}: ${(error as Error).message}; exit ${run.exitCode}; stdout: ${run.stdout.slice(-500)}; stderr: ${run.stderr.slice(-1500)}`,
    );
  }
  return { run, report };
}

/**
 * A one-step document that runs only the look-back step, with the capture document's parameter
 * declarations (patterns, defaults) plus RingDirectory from the standby document when the capture
 * document does not declare it, and prints the step's outputs as one JSON line.
 */
export function lookbackStepDocument(
  captureDocument: SsmCommandDocument,
  standbyDocument: SsmCommandDocument,
  step: string,
): SsmCommandDocument {
  const parameters = { ...(captureDocument.parameters ?? {}) };
  if (!parameters.RingDirectory) {
    const ring = standbyDocument.parameters?.RingDirectory;
    if (!ring) throw new Error('the standby document declares no RingDirectory');
    parameters.RingDirectory = ring;
  }
  const script = [
    '#!/bin/bash',
    'set -euo pipefail',
    'umask 077',
    step,
    'if tl_lb_requested; then tl_lb_run "$(printenv AWS_SSM_INSTANCE_ID || true)" ""; fi',
    `printf '{"tapline":"lookback-step","lookback":%s,"files":[%s],"unsent":[%s],"fileCount":%s,"bytes":%s}\\n' "$LOOKBACK_JSON" "$LOOKBACK_FILES_JSON" "$LOOKBACK_UNSENT_JSON" "$LOOKBACK_FILE_COUNT" "$LOOKBACK_BYTES"`,
  ].join('\n');
  return {
    schemaVersion: '2.2',
    parameters,
    mainSteps: [
      { action: 'aws:runShellScript', name: 'lookback', inputs: { runCommand: [script] } },
    ],
  };
}

/** Bytes of ring files in a ring directory's files/ (0 when it does not exist). */
export async function ringBytes(ringDirectory: string): Promise<number> {
  const dir = join(ringDirectory, 'files');
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return 0;
  }
  let total = 0;
  for (const name of names) {
    if (!RING_FILE.test(name)) continue;
    try {
      total += (await stat(join(dir, name))).size;
    } catch {
      // pruned between readdir and stat
    }
  }
  return total;
}

export interface RingSampler {
  /** Stop sampling; the largest size seen and how many samples were taken. */
  stop(): Promise<{ maxBytes: number; samples: number }>;
}

/** Samples the ring's size on disk every `intervalMs` until stopped. */
export function sampleRing(ringDirectory: string, intervalMs = 100): RingSampler {
  let maxBytes = 0;
  let samples = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const bytes = await ringBytes(ringDirectory);
      maxBytes = Math.max(maxBytes, bytes);
      samples += 1;
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { maxBytes, samples };
    },
  };
}
