import { DescribeInstanceInformationCommand, type SSMClient } from '@aws-sdk/client-ssm';
import type { CoreLogger } from '../observability.ts';

export type SsmAvailability = 'online' | 'offline' | 'unknown';

export interface OnlineCheck {
  /** Per instance: Online per SSM, not Online (ConnectionLost, Inactive, unregistered), or unknown. */
  status: Record<string, SsmAvailability>;
  /** Why the status is unknown, when SSM could not be asked (permissions, emulators, outages). */
  unknownBecause?: string;
}

/**
 * Asks SSM which instances are managed and online (DescribeInstanceInformation, ≤ 50 IDs per
 * call). When SSM cannot answer (no such operation in an emulator, AccessDenied, throttling),
 * every host is "unknown": reported, never silently treated as online or offline.
 */
export async function checkSsmOnline(
  ssm: SSMClient,
  instanceIds: string[],
  logger: CoreLogger,
): Promise<OnlineCheck> {
  const status: Record<string, SsmAvailability> = {};
  try {
    for (let i = 0; i < instanceIds.length; i += 50) {
      const batch = instanceIds.slice(i, i + 50);
      let NextToken: string | undefined;
      const seen = new Map<string, string | undefined>();
      do {
        const out = await ssm.send(
          new DescribeInstanceInformationCommand({
            Filters: [{ Key: 'InstanceIds', Values: batch }],
            NextToken,
          }),
        );
        for (const info of out.InstanceInformationList ?? []) {
          if (info.InstanceId) seen.set(info.InstanceId, info.PingStatus);
        }
        NextToken = out.NextToken;
      } while (NextToken);
      for (const id of batch) status[id] = seen.get(id) === 'Online' ? 'online' : 'offline';
    }
    return { status };
  } catch (error) {
    const e = error as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
    const because = `DescribeInstanceInformation unavailable (${e.name ?? 'error'}${e.$metadata?.httpStatusCode ? ` HTTP ${e.$metadata.httpStatusCode}` : ''}): SSM status of the hosts is unknown`;
    logger.warn(because, { error: e.message?.slice(0, 300) });
    return {
      status: Object.fromEntries(instanceIds.map((id) => [id, 'unknown' as const])),
      unknownBecause: because,
    };
  }
}
