import { type EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { PublishCommand, type SNSClient } from '@aws-sdk/client-sns';
import type { CoreLogger } from '../observability.ts';

/** What Tapline tells the outside world: a SIEM must see every capture it starts or ends. */
export type TaplineEventType =
  | 'Capture Started'
  | 'Capture Refused'
  | 'Capture Updated'
  | 'Capture Finished'
  | 'Flow Anomaly Detected'
  | 'Pcap Processed'
  | 'Pcap Integrity Failed';

export interface NotifyDeps {
  eventBridge: EventBridgeClient;
  sns: SNSClient;
  /** EventBridge bus name or ARN. */
  eventBusName: string;
  /** Resolved SNS topic ARN (see shared/aws/resolve.ts). */
  topicArn: string;
  logger: CoreLogger;
}

export interface PublishResult {
  eventBridge: 'sent' | 'failed';
  sns: 'sent' | 'failed';
}

/**
 * Publishes one event to EventBridge (source `tapline`) and to the SNS topic. Both are tried;
 * a failure of either is logged loudly and returned, never thrown, so a notification outage
 * cannot lose a capture or a result. Callers that must not proceed silently check the result.
 */
export async function publishEvent(
  deps: NotifyDeps,
  type: TaplineEventType,
  detail: Record<string, unknown>,
): Promise<PublishResult> {
  const body = JSON.stringify(detail);
  const [eb, sns] = await Promise.allSettled([
    deps.eventBridge
      .send(
        new PutEventsCommand({
          Entries: [
            { Source: 'tapline', DetailType: type, Detail: body, EventBusName: deps.eventBusName },
          ],
        }),
      )
      .then((out) => {
        if ((out.FailedEntryCount ?? 0) > 0) {
          throw new Error(out.Entries?.[0]?.ErrorMessage ?? 'EventBridge rejected the entry');
        }
      }),
    deps.sns.send(
      new PublishCommand({
        TopicArn: deps.topicArn,
        Subject: `Tapline: ${type}`.slice(0, 100),
        Message: JSON.stringify({ type, ...detail }),
        MessageAttributes: { type: { DataType: 'String', StringValue: type } },
      }),
    ),
  ]);
  if (eb.status === 'rejected')
    deps.logger.error('EventBridge publish failed', { type, error: String(eb.reason) });
  if (sns.status === 'rejected')
    deps.logger.error('SNS publish failed', { type, error: String(sns.reason) });
  return {
    eventBridge: eb.status === 'fulfilled' ? 'sent' : 'failed',
    sns: sns.status === 'fulfilled' ? 'sent' : 'failed',
  };
}
