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
