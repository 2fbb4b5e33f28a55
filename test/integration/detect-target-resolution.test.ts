/**
 * Findings from flow records go through the design's target resolution whatever the record
 * format: a v5 record's instance-id names the workload that logged the traffic, which is not
 * necessarily a host Tapline may or can capture on (untagged; its traffic is seen by the NAT).
 */
import { describe, expect, it } from 'vitest';
import { parseCaptureRequest } from '../../shared/capture/request.ts';
import { detectBatch } from '../../shared/detection/detect.ts';
import { defaultRules } from '../../shared/rules/config.ts';
import { resolveTargets } from '../../shared/targets/resolve.ts';
import { runInstance } from '../fixtures/capture/world.ts';
import { textFlowBatch } from '../support/flowlog-inputs.ts';
import { useResolutionWorld } from '../support/resolution-world.ts';

const V5 =
  'version account-id interface-id instance-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status tcp-flags flow-direction';
const V2 =
  'version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status';
const PEER = '192.0.2.7';

/** One port-0 TCP flow from the host to an internet peer, in the given format. */
function flowLines(
  host: { instanceId: string; eniId: string; privateIp: string },
  version: 2 | 5,
): string {
  const tail = `${host.privateIp} ${PEER} 40000 0 6 3 120 1795424204 1795424204 ACCEPT OK`;
  return version === 5
    ? `${V5}\n5 123456789012 ${host.eniId} ${host.instanceId} ${tail} 2 egress\n`
    : `${V2}\n2 123456789012 ${host.eniId} ${tail}\n`;
}

async function findingFor(text: string) {
  const { findings } = await detectBatch(textFlowBatch(text), {
    rules: defaultRules(),
    clock: () => new Date(1_795_424_500_000),
  });
  const finding = findings.find((f) => f.rule === 'port-zero');
  expect(finding).toBeDefined();
  return finding!;
}

describe('finding targets follow the resolution order for every record format', () => {
  const at = useResolutionWorld(79);

  it('sends a v5 finding on an untagged workload to the NAT its route table uses, like v2', async () => {
    const v5 = await findingFor(flowLines(at.topo.workload, 5));
    const v2 = await findingFor(flowLines(at.topo.workload, 2));
    expect(v5.capture.request.targets).toEqual({
      kind: 'eni',
      eniId: at.topo.workload.eniId,
      peerAddress: PEER,
    });
    expect(v5.capture.request.targets).toEqual(v2.capture.request.targets);
    // The instance-id stays in the evidence records, not in the capture suggestion.
    expect(v5.evidence[0]!['instance-id']).toBe(at.topo.workload.instanceId);
    expect(v5.capture.where).not.toHaveProperty('instanceIds');
    expect(v5.capture.where).toEqual(v2.capture.where);

    const request = parseCaptureRequest(v5.capture.request);
    const { targets } = await resolveTargets(request.targets, at.deps);
    expect(targets.map((t) => [t.instanceId, t.via])).toEqual([[at.topo.nat.instanceId, 'route']]);
  });

  it('still captures on the instance itself when it is tagged for capture', async () => {
    const tagged = await runInstance(at.world.clients.ec2, at.topo.privateSubnetId, [
      at.world.tags.capture,
    ]);
    const finding = await findingFor(flowLines(tagged, 5));
    const { targets } = await resolveTargets(
      parseCaptureRequest(finding.capture.request).targets,
      at.deps,
    );
    expect(targets.map((t) => [t.instanceId, t.via])).toEqual([[tagged.instanceId, 'self']]);
  });
});
