import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { type CaptureRequestInput, parseCaptureRequest } from '../shared/capture/request.ts';
import { InvalidCaptureRequestError } from '../shared/errors.ts';

/** The flags `tapline capture` and `tapline plan` share: what to capture, where, for how long. */
export interface CaptureFlags {
  target?: string[];
  tag?: string;
  eni?: string;
  addr?: string;
  peer?: string;
  vpc?: string;
  finding?: string;
  duration?: string;
  filter?: string;
  host?: string[];
  port?: string[];
  proto?: string[];
  direction?: string;
  snaplen?: string;
  headersOnly?: boolean;
  interface?: string;
  lookback?: string;
  reason?: string;
  ticket?: string;
  requestedBy?: string;
}

const collect = (value: string, previous: string[] = []) => [
  ...previous,
  ...value.split(',').filter(Boolean),
];

export function withCaptureFlags(command: Command): Command {
  return command
    .option('--target <instance-ids>', 'instance ID(s), comma-separated or repeated', collect)
    .option('--tag <key=value>', 'every running instance with this tag')
    .option('--eni <eni-id>', 'the host(s) that see this network interface’s traffic')
    .option('--addr <address>', 'the host(s) that see this private address’s traffic')
    .option('--peer <address>', 'with --eni/--addr: the far end (picks the route, e.g. the NAT)')
    .option('--vpc <vpc-id>', 'with --addr: the VPC to look in')
    .option(
      '--finding <file>',
      'a finding line from `tapline detect --json` (its suggested capture)',
    )
    .option('--duration <seconds>', 'capture length in seconds')
    .option('--filter <bpf>', 'raw BPF filter (checked against a strict grammar)')
    .option('--host <cidr>', 'structured filter: host or CIDR (repeatable)', collect)
    .option('--port <port>', 'structured filter: port (repeatable)', collect)
    .option(
      '--proto <protocol>',
      'structured filter: tcp, udp, icmp, icmp6, gre, esp, ipv6-in-ipv4 (repeatable)',
      collect,
    )
    .option('--direction <both|src|dst>', 'structured filter direction for --host')
    .option('--snaplen <bytes>', 'bytes kept per packet (0 = all)')
    .option('--headers-only', 'keep only packet headers (first 128 bytes)')
    .option('--interface <name>', 'capture interface (default: the default-route interface)')
    .option(
      '--lookback <seconds>',
      'first upload the standby ring’s last N seconds, where a ring runs',
    )
    .option('--reason <text>', 'why (recorded in the custody manifest)')
    .option('--ticket <id>', 'ticket or case reference')
    .option('--requested-by <who>', 'who asks (default: your AWS identity)');
}

function integer(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) {
    throw new InvalidCaptureRequestError(`--${name} must be a whole number, got "${value}"`, {
      field: name,
    });
  }
  return Number(value);
}

/** Builds and validates the capture request; throws InvalidCaptureRequestError naming the flag. */
export async function captureRequestFromFlags(
  flags: CaptureFlags,
  source: 'cli',
): Promise<CaptureRequestInput> {
  let base: Record<string, unknown> = {};
  if (flags.finding) {
    const text = await readFile(flags.finding, 'utf8').catch((error: Error) => {
      throw new InvalidCaptureRequestError(
        `cannot read --finding ${flags.finding}: ${error.message}`,
      );
    });
    const line = text.split('\n').find((l) => l.trim().length > 0) ?? '';
    let finding: { capture?: { request?: unknown } };
    try {
      finding = JSON.parse(line);
    } catch {
      throw new InvalidCaptureRequestError(`--finding ${flags.finding} is not a JSON finding line`);
    }
    // `tapline detect --json` writes the suggested capture as { auto, where, request }
    const suggested = finding?.capture?.request;
    if (!suggested || typeof suggested !== 'object' || Array.isArray(suggested)) {
      throw new InvalidCaptureRequestError(`--finding ${flags.finding} has no suggested capture`);
    }
    // the request as the detector would send it, but asked for by whoever runs the CLI (their
    // identity unless --requested-by); the finding and its fingerprint stay, so the capture is
    // recorded against the finding and shares its cooldown with the detector's own capture
    const {
      requestedBy: _detector,
      source: _source,
      ...request
    } = suggested as Record<string, unknown>;
    base = request;
  }
  const selectors = [flags.target?.length ? 'target' : '', flags.tag, flags.eni, flags.addr].filter(
    Boolean,
  );
  if (selectors.length > 1) {
    throw new InvalidCaptureRequestError('give one of --target, --tag, --eni or --addr');
  }
  if (flags.target?.length) base.targets = { kind: 'instances', instanceIds: flags.target };
  if (flags.tag) {
    const at = flags.tag.indexOf('=');
    if (at <= 0) throw new InvalidCaptureRequestError('--tag takes key=value', { field: 'tag' });
    base.targets = { kind: 'tag', key: flags.tag.slice(0, at), value: flags.tag.slice(at + 1) };
  }
  if (flags.eni)
    base.targets = {
      kind: 'eni',
      eniId: flags.eni,
      ...(flags.peer ? { peerAddress: flags.peer } : {}),
    };
  if (flags.addr) {
    base.targets = {
      kind: 'address',
      address: flags.addr,
      ...(flags.peer ? { peerAddress: flags.peer } : {}),
      ...(flags.vpc ? { vpcId: flags.vpc } : {}),
    };
  }
  if (!base.targets)
    throw new InvalidCaptureRequestError('say where: --target, --tag, --eni, --addr or --finding');

  const structured = flags.host?.length || flags.port?.length || flags.proto?.length;
  if (flags.filter && structured) {
    throw new InvalidCaptureRequestError('give either --filter or --host/--port/--proto, not both');
  }
  // a flag that would be dropped is refused: the capture must be what the responder asked for
  if (flags.direction && !flags.host?.length) {
    throw new InvalidCaptureRequestError('--direction says which side --host is on: give --host', {
      field: 'direction',
    });
  }
  if (flags.headersOnly && flags.snaplen !== undefined) {
    throw new InvalidCaptureRequestError('give either --headers-only or --snaplen, not both', {
      field: 'snaplen',
    });
  }
  if (flags.filter) base.filter = { kind: 'bpf', expression: flags.filter };
  if (structured) {
    base.filter = {
      kind: 'structured',
      hosts: flags.host ?? [],
      ports: (flags.port ?? []).map((p) => integer('port', p)),
      protocols: flags.proto ?? [],
      ...(flags.direction ? { direction: flags.direction } : {}),
    };
  }
  const duration = integer('duration', flags.duration);
  if (duration !== undefined) base.durationSeconds = duration;
  if (flags.headersOnly) base.snaplen = 'headers';
  else if (flags.snaplen !== undefined) base.snaplen = integer('snaplen', flags.snaplen);
  if (flags.interface) base.interface = flags.interface;
  const lookback = integer('lookback', flags.lookback);
  if (lookback !== undefined) base.lookbackSeconds = lookback;
  if (flags.reason) base.reason = flags.reason;
  if (!base.reason)
    throw new InvalidCaptureRequestError('--reason is required: it goes into the custody manifest');
  if (flags.ticket) base.ticket = flags.ticket;
  if (flags.requestedBy) base.requestedBy = flags.requestedBy;
  base.source = source;
  // Validate here too, so a typo fails before anything is invoked, with the field named.
  parseCaptureRequest(base);
  return base as CaptureRequestInput;
}
