import { InvokeCommand } from '@aws-sdk/client-lambda';
import type { Command } from 'commander';
import { TaplineError } from '../../shared/errors.ts';
import { type CaptureManifest, TERMINAL_HOST_STATUSES } from '../../shared/evidence/manifest.ts';
import { type CaptureFlags, captureRequestFromFlags, withCaptureFlags } from '../capture-flags.ts';
import {
  type CliContext,
  callerIdentity,
  cliContext,
  type StageOptions,
  withStageOptions,
} from '../cli-context.ts';
import { humanBytes, statusLine } from '../output.ts';
import { captureStatus, renderStatus } from './status.ts';

/** Calls the deployed start-capture function; tests and the lab pass a stand-in. */
export type Invoker = (functionName: string, payload: unknown) => Promise<unknown>;

export function lambdaInvoker(ctx: CliContext): Invoker {
  return async (functionName, payload) => {
    const out = await ctx.clients.lambda.send(
      new InvokeCommand({
        FunctionName: functionName,
        InvocationType: 'RequestResponse',
        Payload: new TextEncoder().encode(JSON.stringify(payload)),
      }),
    );
    const text = out.Payload ? new TextDecoder().decode(out.Payload) : '';
    if (out.FunctionError) {
      throw new TaplineError(
        `${functionName} failed (${out.FunctionError}): ${text.slice(0, 2000)}`,
        {
          code: 'FUNCTION_ERROR',
        },
      );
    }
    return text ? JSON.parse(text) : undefined;
  };
}

export interface StartResponse {
  ok: boolean;
  captureId?: string;
  state?: string;
  started?: { instanceId: string; why: string; commandId: string }[];
  refused?: { instanceId?: string; reason: string; message: string }[];
  deadline?: string;
  error?: { name: string; code: string; message: string; details?: Record<string, unknown> };
}

export async function startCaptureViaFunction(
  ctx: CliContext,
  flags: CaptureFlags,
  invoke: Invoker,
): Promise<StartResponse> {
  const request = await captureRequestFromFlags(flags, 'cli');
  if (!request.requestedBy) {
    const who = await callerIdentity(ctx.clients);
    if (who) request.requestedBy = who;
  }
  const response = (await invoke(ctx.functionName('startCapture'), request)) as StartResponse;
  if (!response || typeof response !== 'object') {
    throw new TaplineError('start-capture answered with no result', { code: 'FUNCTION_ERROR' });
  }
  return response;
}

export function renderStart(r: StartResponse): string {
  if (r.error) return `capture request rejected: ${r.error.message}\n`;
  const lines = [`capture ${r.captureId} ${r.state}`];
  for (const s of r.started ?? [])
    lines.push(`  started  ${s.instanceId}  ${s.why}  (command ${s.commandId})`);
  for (const s of r.refused ?? [])
    lines.push(`  refused  ${s.instanceId ?? '(all)'}  ${s.reason}: ${s.message}`);
  return `${lines.join('\n')}\n`;
}

export function hostSummary(m: CaptureManifest): string {
  return Object.entries(m.hosts ?? {})
    .map(([id, h]) => {
      const bytes = (h.files ?? []).reduce((n, f) => n + (f.size ?? 0), 0);
      return `${id}: ${h.status}${h.files?.length ? ` (${h.files.length} files, ${humanBytes(bytes)})` : ''}`;
    })
    .join(' · ');
}

export function isFinished(m: CaptureManifest): boolean {
  const hosts = Object.values(m.hosts ?? {});
  return hosts.length === 0
    ? m.state !== 'pending' && m.state !== 'running'
    : hosts.every((h) => TERMINAL_HOST_STATUSES.includes(h.status));
}

/** How often the tracker's time-out sweep closes hosts that never reported (serverless.yml). */
const SWEEP_INTERVAL_MS = 15 * 60_000;

/**
 * How long `--wait` follows a capture: until its hosts' report deadline (the capture's real
 * length, look-back and the stage's defaults included) plus one time-out sweep and a minute,
 * by which time every host is finished, failed or timed out. Without a deadline in the answer
 * (an older start-capture), the requested duration plus 15 minutes.
 */
export function waitTimeoutMs(
  response: StartResponse,
  requestedSeconds: number,
  now = Date.now(),
): number {
  const deadline = response.deadline ? Date.parse(response.deadline) : Number.NaN;
  if (Number.isFinite(deadline)) return Math.max(0, deadline - now) + SWEEP_INTERVAL_MS + 60_000;
  return (requestedSeconds + 900) * 1000;
}

/** Follows a capture's manifest until every host is done (or `timeoutMs`), showing a status line. */
export async function waitForCapture(
  ctx: CliContext,
  captureId: string,
  options: { intervalMs?: number; timeoutMs: number; onUpdate?: (m: CaptureManifest) => void },
): Promise<CaptureManifest> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    const manifest = await captureStatus(ctx, captureId);
    options.onUpdate?.(manifest);
    if (isFinished(manifest)) return manifest;
    if (Date.now() > deadline) {
      throw new TaplineError(
        `gave up waiting for ${captureId} (still ${manifest.state}); \`tapline status ${captureId}\` shows where it is`,
        {
          code: 'WAIT_TIMEOUT',
          details: { captureId, state: manifest.state },
        },
      );
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 5000));
  }
}

export function register(
  program: Command,
  invokerFor: (ctx: CliContext) => Invoker = lambdaInvoker,
): void {
  withCaptureFlags(
    withStageOptions(
      program
        .command('capture')
        .description('start a capture through the deployed start-capture function')
        .option('--wait', 'follow the capture to its end, with a live status line per host'),
    ),
  ).action(async (options: StageOptions & CaptureFlags & { wait?: boolean }) => {
    const ctx = cliContext(options);
    const response = await startCaptureViaFunction(ctx, options, invokerFor(ctx));
    if (!options.wait || !response.captureId || (response.started ?? []).length === 0) {
      process.stdout.write(options.json ? `${JSON.stringify(response)}\n` : renderStart(response));
      if (!response.ok) process.exitCode = response.error ? 2 : 1;
      return;
    }
    if (!options.json) process.stdout.write(renderStart(response));
    const line = statusLine();
    const manifest = await waitForCapture(ctx, response.captureId, {
      timeoutMs: waitTimeoutMs(response, Number(options.duration ?? 300)),
      onUpdate: (m) => line.show(`${m.captureId} ${m.state}: ${hostSummary(m)}`),
    });
    line.done();
    process.stdout.write(options.json ? `${JSON.stringify(manifest)}\n` : renderStatus(manifest));
    if (manifest.state !== 'finished') process.exitCode = 1;
  });
}
