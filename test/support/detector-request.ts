/**
 * The capture request the flow-log detector makes for a port-0 finding: one host, a one-minute
 * capture, and the finding's fingerprint (what the cooldown is keyed on).
 */
export function detectorPortZeroRequest(
  instanceId: string,
  flow: { workload: string; peer: string },
) {
  return {
    targets: { kind: 'instances' as const, instanceIds: [instanceId] },
    reason: `detector: port-0 from ${flow.peer}`,
    fingerprint: `port-zero:tcp:${flow.workload}:${flow.peer}`,
    durationSeconds: 60,
    source: 'detector' as const,
  };
}
