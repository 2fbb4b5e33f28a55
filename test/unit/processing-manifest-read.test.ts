import { GetObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { describe, expect, it } from 'vitest';
import { ManifestReadError } from '../../shared/processing/errors.ts';
import {
  checkProvenance,
  manifestFacts,
  readManifestFacts,
} from '../../shared/processing/manifest.ts';

const CAP = 'cap-20261124T010203Z-0a1b2c3d';
const INSTANCE = 'i-0a1b2c3d4e5f60718';
const KEY = `pcaps/${CAP}/${INSTANCE}/tl-20261124T010210Z.pcap`;
const silent = { debug() {}, info() {}, warn() {}, error() {} };

function s3Error(name: string, status: number): S3ServiceException {
  return new S3ServiceException({
    name,
    $fault: status >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: status },
    message: name,
  });
}

async function readWith(error: S3ServiceException) {
  const s3 = new S3Client({ region: 'us-east-1' });
  mockClient(s3).on(GetObjectCommand).rejects(error);
  return readManifestFacts(s3, 'evidence', CAP, INSTANCE, KEY, 'v1', silent as never);
}

describe('what the processor makes of the capture manifest', () => {
  it('records absence and refusal as facts, and retries a read that may pass', async () => {
    const absent = await readWith(s3Error('NoSuchKey', 404));
    expect(absent.status).toBe('absent');
    expect(checkProvenance(absent, CAP, INSTANCE).status).toBe('no-manifest');

    // S3's answer for a missing key to a role that may not list captures/
    const denied = await readWith(s3Error('AccessDenied', 403));
    expect(denied.status).toBe('unreadable');
    expect(checkProvenance(denied, CAP, INSTANCE)).toMatchObject({
      status: 'no-manifest',
      detail: expect.stringContaining('missing, or the role may not read it'),
    });

    // throttling after the SDK's own retries: the record fails and SQS delivers it again
    await expect(readWith(s3Error('SlowDown', 503))).rejects.toBeInstanceOf(ManifestReadError);
    await expect(readWith(s3Error('InternalError', 500))).rejects.toMatchObject({
      code: 'MANIFEST_READ_FAILED',
    });
  });

  it('tells the capture core’s refusal from a host that refused after its command', () => {
    const refusedByCore = manifestFacts(
      { hosts: { [INSTANCE]: { status: 'refused', files: [] } } },
      INSTANCE,
      KEY,
      'v1',
    );
    expect(refusedByCore.hostCommandSeen).toBe(false);
    expect(checkProvenance(refusedByCore, CAP, INSTANCE).status).toBe('not-sent');
    const refusedOnHost = manifestFacts(
      {
        hosts: {
          [INSTANCE]: { status: 'refused', commandId: 'c-1', ssmStatus: 'Failed', files: [] },
        },
      },
      INSTANCE,
      KEY,
      'v1',
    );
    expect(refusedOnHost.hostCommandSeen).toBe(true);
    expect(checkProvenance(refusedOnHost, CAP, INSTANCE).status).toBe('capture-host');
  });
});
