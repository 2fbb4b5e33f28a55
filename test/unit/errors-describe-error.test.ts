/**
 * describeError: the one describer of a caught error for results, manifests and logs (the
 * detector's reports and the capture core's refusal-notice failures). Key order is checked too
 * (JSON.stringify), because these objects are written to logs and manifests as they are.
 */
import { S3ServiceException } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { CorruptFlowLogError, describeError, TaplineError } from '../../shared/errors.ts';

const s3Failure = (name: string, status: number, message: string) =>
  new S3ServiceException({
    name,
    $fault: status >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: status },
    message,
  });

describe('describeError', () => {
  it('a TaplineError gives its name, code and message, and never an HTTP status', () => {
    const error = new CorruptFlowLogError('gzip data cut short', { key: 'a.log.gz' });
    const described = describeError(error, { status: true });
    expect(JSON.stringify(described)).toBe(
      JSON.stringify({
        name: 'CorruptFlowLogError',
        code: 'FLOW_LOG_CORRUPT',
        message: 'gzip data cut short',
      }),
    );
    expect(describeError(new TaplineError('x'.repeat(500)), { maxMessageLength: 300 })).toEqual({
      name: 'TaplineError',
      code: 'TAPLINE_ERROR',
      message: 'x'.repeat(300),
    });
  });

  it('an AWS SDK error gives its HTTP status only when asked, between name and message', () => {
    const error = s3Failure('SlowDown', 503, 'Please reduce your request rate.');
    expect(JSON.stringify(describeError(error))).toBe(
      JSON.stringify({ name: 'SlowDown', message: 'Please reduce your request rate.' }),
    );
    expect(JSON.stringify(describeError(error, { status: true }))).toBe(
      JSON.stringify({
        name: 'SlowDown',
        status: 503,
        message: 'Please reduce your request rate.',
      }),
    );
  });

  it('bounds the message only when asked', () => {
    const long = s3Failure('AccessDenied', 403, `denied ${'y'.repeat(1000)}`);
    expect(describeError(long).message).toHaveLength(1007);
    expect(describeError(long, { status: true, maxMessageLength: 300 })).toEqual({
      name: 'AccessDenied',
      status: 403,
      message: `denied ${'y'.repeat(293)}`,
    });
  });

  it('anything else thrown is an Error named by its name, described by its message or itself', () => {
    expect(describeError(new RangeError('out of range'))).toEqual({
      name: 'RangeError',
      message: 'out of range',
    });
    expect(describeError('plain string')).toEqual({ name: 'Error', message: 'plain string' });
    expect(describeError(null)).toEqual({ name: 'Error', message: 'null' });
    expect(describeError(undefined, { status: true })).toEqual({
      name: 'Error',
      message: 'undefined',
    });
    expect(describeError({ $metadata: {} }, { status: true })).toEqual({
      name: 'Error',
      message: '[object Object]',
    });
    // a bounded message is always a string, whatever was thrown
    expect(describeError({ message: 42 }, { maxMessageLength: 300 }).message).toBe('42');
  });
});
