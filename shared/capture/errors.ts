import { TaplineError } from '../errors.ts';

/**
 * A SendCommand parameter value the capture document's allowedPattern would refuse. Real SSM
 * refuses the whole command then (and moto does not check at all), so the capture core checks
 * every value itself before any guard is taken or any command is sent.
 */
export class DocumentParameterError extends TaplineError {
  constructor(parameter: string, value: string, pattern: RegExp) {
    super(
      `capture document parameter ${parameter} ${JSON.stringify(value.slice(0, 80))} does not match its allowedPattern ${pattern.source}`,
      {
        code: 'DOCUMENT_PARAMETER_INVALID',
        details: { parameter, value: value.slice(0, 200), pattern: pattern.source },
      },
    );
  }
}

/** A new capture's manifest already exists: its ID was taken (a clock or ID-source fault). */
export class CaptureIdCollisionError extends TaplineError {
  constructor(captureId: string) {
    super(`a capture manifest for ${captureId} already exists; nothing was started`, {
      code: 'CAPTURE_ID_COLLISION',
      details: { captureId },
    });
  }
}
