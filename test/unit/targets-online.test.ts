import { DescribeInstanceInformationCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../shared/observability.ts';
import { checkSsmOnline } from '../../shared/targets/online.ts';

// moto has no DescribeInstanceInformation: the online/offline mapping is checked against a mock.
const ssm = new SSMClient({ region: 'us-east-1' });
const mock = mockClient(ssm);
afterEach(() => mock.reset());

describe('checkSsmOnline', () => {
  it('maps Online to online and everything else (ConnectionLost, unregistered) to offline, ≤ 50 IDs a call', async () => {
    const ids = Array.from({ length: 60 }, (_, i) => `i-${String(i).padStart(17, '0')}`);
    mock.on(DescribeInstanceInformationCommand).callsFake((input) => {
      const batch: string[] = input.Filters[0].Values;
      expect(batch.length).toBeLessThanOrEqual(50);
      return {
        InstanceInformationList: batch
          .filter((id) => id !== ids[1])
          .map((id) => ({
            InstanceId: id,
            PingStatus: id === ids[0] ? 'ConnectionLost' : 'Online',
          })),
      };
    });
    const result = await checkSsmOnline(ssm, ids, silentLogger);
    expect(mock.commandCalls(DescribeInstanceInformationCommand)).toHaveLength(2);
    expect(result.unknownBecause).toBeUndefined();
    expect(result.status[ids[0]!]).toBe('offline');
    expect(result.status[ids[1]!]).toBe('offline');
    expect(result.status[ids[59]!]).toBe('online');
  });

  it('reports unknown (never online or offline) when SSM cannot answer', async () => {
    mock
      .on(DescribeInstanceInformationCommand)
      .rejects(
        Object.assign(new Error('User is not authorized'), { name: 'AccessDeniedException' }),
      );
    const result = await checkSsmOnline(ssm, ['i-0123456789abcdef0'], silentLogger);
    expect(result.status).toEqual({ 'i-0123456789abcdef0': 'unknown' });
    expect(result.unknownBecause).toMatch(/AccessDeniedException/);
  });
});
