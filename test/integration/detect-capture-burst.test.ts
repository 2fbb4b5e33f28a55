import { describe, expect, it } from 'vitest';
import { makeHandler } from '../../functions/detect-flow-anomalies.ts';
import { evidenceStore, notifyDeps, startCapture } from '../../shared/capture/start-capture.ts';
import type { DetectDeps } from '../../shared/detection/detect.ts';
import { DEFAULT_FIELDS } from '../../shared/flowlogs/format.ts';
import { encodeSubscriptionData } from '../../shared/flowlogs/sources/cloudwatch.ts';
import { lambdaContext } from '../../shared/lab/lab-aws.ts';
import { mapLimit } from '../../shared/map-limit.ts';
import { silentLogger } from '../../shared/observability.ts';
import { defaultRules } from '../../shared/rules/config.ts';
import { makeCaptureWorld, makeTopology } from '../fixtures/capture/world.ts';
import { motoClients } from '../support/aws.ts';
import { ssmRecordingSendCommands } from '../support/ssm-send-recorder.ts';

/** The stage's FLOW_LOG_FORMAT, in AWS LogFormat syntax (a v3 custom format): the default
 *  fields with `instance-id` in place of `account-id`. */
const FORMAT = DEFAULT_FIELDS.map((f) => (f === 'account-id' ? 'instance-id' : f))
  .map((f) => `\${${f}}`)
  .join(' ');

const context = lambdaContext('tapline-test-detectFlowAnomalies', { awsRequestId: 'burst' });

/**
 * A flood of identical port-0 anomalies, delivered as 1,000 separate CloudWatch Logs deliveries
 * (so in-batch dedupe cannot help) and handled concurrently by the real handler wired to the
 * real capture core on moto: its lock and cooldown must let at most one SendCommand per host.
 */
describe('1,000 identical port-0 findings in a burst', () => {
  it('start at most one SendCommand per host (capture core cooldown and lock, moto)', async () => {
    const world = await makeCaptureWorld({
      COOLDOWN_SECONDS: '900',
      HOURLY_CAPTURE_BUDGET: '5000',
    });
    const topo = await makeTopology(world, 202);
    const hosts = [topo.workload, topo.sensor];

    const { ssm, sent } = ssmRecordingSendCommands();
    // what responders receive: every EventBridge entry the detector publishes for a finding
    const eventBridge = motoClients().eventBridge;
    let findingNotifications = 0;
    eventBridge.middlewareStack.add(
      (next, ctx) => async (args) => {
        if (ctx.commandName === 'PutEventsCommand') {
          const entries = (args.input as { Entries?: Array<{ DetailType?: string }> }).Entries;
          for (const e of entries ?? []) {
            if (e.DetailType === 'Flow Anomaly Detected') findingNotifications += 1;
          }
        }
        return next(args);
      },
      { step: 'initialize', name: 'countFindingNotifications' },
    );
    const captureDeps = { ...world.deps, clients: { ...world.deps.clients, ssm } };
    const deps: DetectDeps = {
      rules: defaultRules(),
      flowLogFormat: FORMAT,
      logger: silentLogger,
      notify: await notifyDeps({
        ...captureDeps,
        clients: { ...captureDeps.clients, eventBridge },
      }),
      notices: await evidenceStore(captureDeps),
      startCapture: (request) => startCapture(request, captureDeps),
    };
    const handler = makeHandler(async () => deps);

    const t = Math.floor(Date.now() / 1000) - 420;
    const delivery = (i: number) => {
      const host = hosts[i % hosts.length]!;
      const message = `3 ${host.instanceId} ${host.eniId} 198.51.100.66 ${host.privateIp} ${20000 + i} 0 6 1 40 ${t} ${t + 60} REJECT OK`;
      const payload = {
        messageType: 'DATA_MESSAGE' as const,
        owner: '123456789012',
        logGroup: '/tapline/test/vpc-flow-logs',
        logStream: `${host.eniId}-all`,
        subscriptionFilters: ['tapline'],
        logEvents: [{ id: String(i), timestamp: t * 1000, message }],
      };
      return { awslogs: { data: encodeSubscriptionData(payload) } };
    };

    const statuses: string[] = [];
    let notRecorded = 0;
    let notificationsSuppressed = 0;
    await mapLimit(Array.from({ length: 1000 }), 16, async (_, i) => {
      const response = await handler(delivery(i), context);
      expect(response.findings).toHaveLength(1);
      statuses.push(...response.captures.map((c) => c.status));
      notRecorded += response.captures.filter((c) => c.recorded === false).length;
      notificationsSuppressed += response.notificationsSuppressed;
    });

    expect(statuses).toHaveLength(1000);
    const perHost = new Map<string, number>();
    for (const ids of sent) for (const id of ids) perHost.set(id, (perHost.get(id) ?? 0) + 1);
    for (const host of hosts) expect(perHost.get(host.instanceId) ?? 0).toBeLessThanOrEqual(1);
    // and the flood did capture: each host once
    expect([...perHost.values()]).toEqual([1, 1]);
    expect(statuses.filter((s) => s === 'started')).toHaveLength(2);
    expect(statuses.filter((s) => s === 'refused')).toHaveLength(998);
    // The refusal flood is rate-limited: apart from the requests racing the first captures
    // (at most the 16 concurrent workers' worth), refusals are counted, not written/published.
    expect(998 - notRecorded).toBeLessThanOrEqual(50);
    // Finding notifications are rate-limited too: one per fingerprint (here one per host) and
    // notification window, the rest counted in the response and the log.
    expect(findingNotifications).toBeGreaterThanOrEqual(1);
    expect(findingNotifications).toBeLessThanOrEqual(2);
    expect(notificationsSuppressed).toBe(1000 - findingNotifications);
  }, 600_000);
});
