/**
 * One error tree for Tapline. Every error we raise on purpose is a TaplineError, so handlers,
 * the CLI and tests can tell "we refused this, and here is why" from "something broke".
 *
 * `code` is stable and machine-readable (CLI exit codes, result files, metrics);
 * `details` carries the structured context (which field, which value, which host).
 * Domain folders may add subclasses in their own `errors.ts`, always extending TaplineError.
 */
export class TaplineError extends Error {
  readonly code: string;
  readonly details: Record<string, unknown>;

  constructor(
    message: string,
    options: { code?: string; details?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = options.code ?? 'TAPLINE_ERROR';
    this.details = options.details ?? {};
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, code: this.code, message: this.message, details: this.details };
  }
}

/** The environment or a config file is missing or malformed. Raised at start-up. */
export class ConfigError extends TaplineError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(message, { code: 'CONFIG_INVALID', details });
  }
}

/** An incoming event (Lambda payload, CLI input) does not have the shape we accept. */
export class MalformedEventError extends TaplineError {
  constructor(message: string, details: Record<string, unknown> = {}, cause?: unknown) {
    super(message, { code: 'EVENT_MALFORMED', details, cause });
  }
}

/** A capture request failed validation; nothing was started. */
export class InvalidCaptureRequestError extends TaplineError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(message, { code: 'CAPTURE_REQUEST_INVALID', details });
  }
}

/** A raw or structured capture filter is not acceptable; `details.part` says which part. */
export class InvalidFilterError extends TaplineError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(message, { code: 'FILTER_INVALID', details });
  }
}

/** No host that can see the requested traffic could be found. We never guess. */
export class NoCaptureTargetError extends TaplineError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(message, { code: 'NO_CAPTURE_TARGET', details });
  }
}

/** A target exists but cannot be captured on (not running, not tagged, not SSM-managed). */
export class TargetNotManagedError extends TaplineError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(message, { code: 'TARGET_NOT_MANAGED', details });
  }
}

/** A guard refused a capture: lock, cooldown, budget, kill switch, limits. */
export type CaptureRefusal =
  | 'kill-switch'
  | 'host-busy'
  | 'cooldown'
  | 'budget'
  | 'duration-limit'
  | 'bytes-limit'
  | 'host-offline';

export class CaptureRefusedError extends TaplineError {
  readonly reason: CaptureRefusal;

  constructor(message: string, reason: CaptureRefusal, details: Record<string, unknown> = {}) {
    super(message, {
      code: `CAPTURE_REFUSED_${reason.toUpperCase().replaceAll('-', '_')}`,
      details,
    });
    this.reason = reason;
  }
}

/** A pcap/pcapng stream cannot be read at all (recoverable damage is an anomaly, not this). */
export class CorruptPcapError extends TaplineError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(message, { code: 'PCAP_CORRUPT', details });
  }
}

/** A hash did not match what the host, S3 or the manifest recorded. */
export class IntegrityError extends TaplineError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(message, { code: 'INTEGRITY_MISMATCH', details });
  }
}

/** A compressed flow-log stream is damaged or cut short: the same bytes will fail again, so a
 * retry cannot help (a network error while reading is not this). */
export class CorruptFlowLogError extends TaplineError {
  constructor(message: string, details: Record<string, unknown> = {}, cause?: unknown) {
    super(message, { code: 'FLOW_LOG_CORRUPT', details, cause });
  }

  /**
   * What was read before the damage is exactly what was written (`details.prefixIntact`): an
   * object cut short, an unreadable Parquet row group after readable ones. False for altered
   * bytes, where nothing read can be trusted.
   */
  get prefixIntact(): boolean {
    return this.details.prefixIntact === true;
  }
}

/** A flow-log record or format string could not be understood. */
export class FlowLogFormatError extends TaplineError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(message, { code: 'FLOW_LOG_FORMAT_INVALID', details });
  }
}

export function isTaplineError(error: unknown): error is TaplineError {
  return error instanceof TaplineError;
}

/** An error as results, manifests and logs keep it: no stack, no cause chain. */
export interface ErrorSummary {
  name: string;
  /** A TaplineError's stable code. */
  code?: string;
  /** With `status`: the HTTP status of a failed AWS call (SDK `$metadata.httpStatusCode`). */
  status?: number;
  message: string;
}

/**
 * THE describer of a caught error (a TaplineError, an AWS SDK error, anything thrown). A
 * TaplineError gives its name, code and message. Otherwise: its name (or "Error") and message
 * (or the thrown value as a string); with `status`, the HTTP status of a failed AWS call; with
 * `maxMessageLength`, the message cut to that length (what is persisted stays small).
 */
export function describeError(
  error: unknown,
  options: { status?: boolean; maxMessageLength?: number } = {},
): ErrorSummary {
  const bound = (message: string) =>
    options.maxMessageLength === undefined
      ? message
      : String(message).slice(0, options.maxMessageLength);
  if (isTaplineError(error)) {
    return { name: error.name, code: error.code, message: bound(error.message) };
  }
  const e = error as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const status = options.status ? e?.$metadata?.httpStatusCode : undefined;
  return {
    name: e?.name ?? 'Error',
    ...(status !== undefined ? { status } : {}),
    message: bound(e?.message ?? String(error)),
  };
}
