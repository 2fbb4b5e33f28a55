import { CreateTagsCommand, StopInstancesCommand } from '@aws-sdk/client-ec2';
import { describe, expect, it } from 'vitest';
import { InvalidCaptureRequestError, NoCaptureTargetError } from '../../shared/errors.ts';
import { resolveTargets } from '../../shared/targets/resolve.ts';
import { makeCaptureWorld, makeTopology, runInstance } from '../fixtures/capture/world.ts';
import { useResolutionWorld } from '../support/resolution-world.ts';

describe('resolveTargets against moto EC2', () => {
  const at = useResolutionWorld(61);

  it('resolves a workload ENI to the NAT instance through the default route', async () => {
    const { targets } = await resolveTargets(
      { kind: 'eni', eniId: at.topo.workload.eniId },
      at.deps,
    );
    expect(targets).toHaveLength(1);
    expect(targets[0]!.instanceId).toBe(at.topo.nat.instanceId);
    expect(targets[0]!.via).toBe('route');
    expect(targets[0]!.why).toContain(at.topo.routeTableId);
    expect(targets[0]!.why).toContain('0.0.0.0/0');
    expect(targets[0]!.why).toContain('explicitly associated');
  });

  it('resolves an address plus internet peer the same way, and follows ENI route targets', async () => {
    const viaAddress = await resolveTargets(
      {
        kind: 'address',
        address: at.topo.workload.privateIp,
        vpcId: at.topo.vpcId,
        peerAddress: '192.0.2.7',
      },
      at.deps,
    );
    expect(viaAddress.targets.map((t) => t.instanceId)).toEqual([at.topo.nat.instanceId]);
    const viaEniRoute = await resolveTargets(
      { kind: 'eni', eniId: at.topo.workload.eniId, peerAddress: '198.51.100.20' },
      at.deps,
    );
    expect(viaEniRoute.targets[0]!.instanceId).toBe(at.topo.nat.instanceId);
    expect(viaEniRoute.targets[0]!.why).toContain('198.51.100.0/24');
    expect(viaEniRoute.targets[0]!.why).toContain(at.topo.nat.eniId);
  });

  it('uses the longest prefix: a more specific route to an internet gateway falls back to the sensor', async () => {
    const { targets } = await resolveTargets(
      { kind: 'eni', eniId: at.topo.workload.eniId, peerAddress: '203.0.113.9' },
      at.deps,
    );
    expect(targets.map((t) => t.instanceId)).toEqual([at.topo.sensor.instanceId]);
    expect(targets[0]!.via).toBe('sensor');
    expect(targets[0]!.why).toMatch(/igw-/);
  });

  it('uses the main route table when the subnet has no explicit association', async () => {
    // The public subnet uses the VPC's main table (local route only): no appliance, so the sensor.
    const { targets } = await resolveTargets({ kind: 'eni', eniId: at.topo.nat.eniId }, at.deps);
    expect(targets[0]!.via).toBe('sensor');
    expect(targets[0]!.why).toContain('main table');
  });

  it('picks the instance itself when it is tagged for capture', async () => {
    const tagged = await runInstance(at.world.clients.ec2, at.topo.privateSubnetId, [
      at.world.tags.capture,
    ]);
    const { targets } = await resolveTargets({ kind: 'eni', eniId: tagged.eniId }, at.deps);
    expect(targets).toEqual([
      expect.objectContaining({ instanceId: tagged.instanceId, via: 'self' }),
    ]);
  });

  it('says so, with a typed error, when nothing can see the traffic', async () => {
    const lonely = await makeCaptureWorld();
    const bare = await makeTopology(lonely, 62);
    // No sensor in this world's tag namespace can be found: retag the sensor away.
    await lonely.clients.ec2.send(
      new CreateTagsCommand({
        Resources: [bare.sensor.instanceId],
        Tags: [{ Key: 'tapline:sensor', Value: 'no' }],
      }),
    );
    const lonelyDeps = { ...at.deps, sensorTag: lonely.config.SENSOR_TAG };
    const error = await resolveTargets(
      { kind: 'eni', eniId: bare.workload.eniId, peerAddress: '203.0.113.9' },
      lonelyDeps,
    ).catch((e) => e);
    expect(error).toBeInstanceOf(NoCaptureTargetError);
    expect(error.details.checked.join(' ')).toMatch(/igw-.*no running host tagged/);
  });

  it('requires explicit instances to exist and run, reporting the ones that do not', async () => {
    const stopped = await runInstance(at.world.clients.ec2, at.topo.privateSubnetId);
    await at.world.clients.ec2.send(
      new StopInstancesCommand({ InstanceIds: [stopped.instanceId] }),
    );
    const result = await resolveTargets(
      {
        kind: 'instances',
        instanceIds: [at.topo.nat.instanceId, stopped.instanceId, 'i-0000000000000dead'],
      },
      at.deps,
    );
    expect(result.targets.map((t) => t.instanceId)).toEqual([at.topo.nat.instanceId]);
    expect(result.skipped).toEqual([
      expect.objectContaining({ instanceId: stopped.instanceId, reason: 'not-running' }),
      expect.objectContaining({ instanceId: 'i-0000000000000dead', reason: 'not-found' }),
    ]);
    await expect(
      resolveTargets({ kind: 'instances', instanceIds: ['i-0000000000000dead'] }, at.deps),
    ).rejects.toBeInstanceOf(NoCaptureTargetError);
  });

  it('finds tagged hosts, defaulting to CAPTURE_TAG', async () => {
    const a = await runInstance(at.world.clients.ec2, at.topo.publicSubnetId, [
      at.world.tags.capture,
    ]);
    const { targets } = await resolveTargets({ kind: 'tag' }, at.deps);
    expect(targets.map((t) => t.instanceId)).toContain(a.instanceId);
    expect(targets.every((t) => t.via === 'tag')).toBe(true);
  });

  it('refuses an ambiguous address and an unknown ENI', async () => {
    await expect(
      resolveTargets({ kind: 'eni', eniId: 'eni-0000000000000dead' }, at.deps),
    ).rejects.toBeInstanceOf(NoCaptureTargetError);
    const other = await makeTopology(at.world, 61);
    const a = await runInstance(at.world.clients.ec2, at.topo.privateSubnetId, [], '10.61.1.200');
    await runInstance(at.world.clients.ec2, other.privateSubnetId, [], '10.61.1.200');
    expect(a.privateIp).toBe('10.61.1.200');
    const error = await resolveTargets({ kind: 'address', address: '10.61.1.200' }, at.deps).catch(
      (e) => e,
    );
    expect(error).toBeInstanceOf(InvalidCaptureRequestError);
    expect(error.message).toMatch(/several VPCs.*give targets.vpcId/);
    const scoped = await resolveTargets(
      { kind: 'address', address: '10.61.1.200', vpcId: at.topo.vpcId },
      at.deps,
    );
    expect(scoped.targets[0]!.instanceId).toBe(at.topo.nat.instanceId);
  });
});
