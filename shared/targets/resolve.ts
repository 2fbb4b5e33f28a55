import { isIP } from 'node:net';
import {
  DescribeInstancesCommand,
  DescribeNetworkInterfacesCommand,
  DescribeRouteTablesCommand,
  type EC2Client,
  type Filter,
  type Instance,
  type NetworkInterface,
  type Route,
  type RouteTable,
} from '@aws-sdk/client-ec2';
import type { TargetSelector } from '../capture/request.ts';
import { InvalidCaptureRequestError, NoCaptureTargetError } from '../errors.ts';
import type { CoreLogger } from '../observability.ts';
import { cidrContains, parseCidr } from './cidr.ts';

/**
 * From a capture request's target selector to the hosts that can see the traffic, each with
 * the reason it was chosen. Order for an ENI or address: the instance itself when it is tagged
 * for capture; else the NAT instance / appliance its subnet's route table sends the peer's
 * traffic to (explicit subnet association, else the VPC's main table; longest-prefix match;
 * route target given as an instance or an ENI); else a sensor-tagged host in the same VPC.
 * Nothing found: NoCaptureTargetError. We never guess.
 */

export type TargetVia = 'explicit' | 'tag' | 'self' | 'route' | 'sensor';

export interface ResolvedTarget {
  instanceId: string;
  via: TargetVia;
  /** Human-readable: why this host sees the requested traffic. */
  why: string;
  vpcId?: string | undefined;
}

export interface SkippedTarget {
  instanceId: string;
  reason: 'not-found' | 'not-running';
  detail: string;
}

export interface TargetResolution {
  targets: ResolvedTarget[];
  skipped: SkippedTarget[];
}

export interface TargetDeps {
  ec2: EC2Client;
  /** `key=value` tags from config (CAPTURE_TAG, SENSOR_TAG). */
  captureTag: string;
  sensorTag: string;
  logger: CoreLogger;
}

export function parseTag(tag: string): { key: string; value: string } {
  const at = tag.lastIndexOf('=');
  if (at <= 0) return { key: tag, value: 'true' };
  return { key: tag.slice(0, at), value: tag.slice(at + 1) };
}

function hasTag(instance: Instance, tag: { key: string; value: string }): boolean {
  return (instance.Tags ?? []).some((t) => t.Key === tag.key && t.Value === tag.value);
}

async function describeInstances(
  ec2: EC2Client,
  input: { InstanceIds?: string[]; Filters?: Filter[] },
) {
  const instances: Instance[] = [];
  let NextToken: string | undefined;
  do {
    const out = await ec2.send(new DescribeInstancesCommand({ ...input, NextToken }));
    for (const r of out.Reservations ?? []) instances.push(...(r.Instances ?? []));
    NextToken = out.NextToken;
  } while (NextToken);
  return instances;
}

async function explicitInstances(ids: string[], deps: TargetDeps): Promise<TargetResolution> {
  const found = new Map<string, Instance>();
  // One call per ID: a missing ID fails the whole batch call (InvalidInstanceID.NotFound).
  await Promise.all(
    [...new Set(ids)].map(async (id) => {
      try {
        const [instance] = await describeInstances(deps.ec2, { InstanceIds: [id] });
        if (instance) found.set(id, instance);
      } catch (error) {
        if ((error as { name?: string }).name?.startsWith('InvalidInstanceID')) return;
        throw error;
      }
    }),
  );
  const result: TargetResolution = { targets: [], skipped: [] };
  for (const id of [...new Set(ids)]) {
    const instance = found.get(id);
    if (!instance) {
      result.skipped.push({ instanceId: id, reason: 'not-found', detail: `${id} does not exist` });
    } else if (instance.State?.Name !== 'running') {
      result.skipped.push({
        instanceId: id,
        reason: 'not-running',
        detail: `${id} is ${instance.State?.Name ?? 'in an unknown state'}`,
      });
    } else {
      result.targets.push({
        instanceId: id,
        via: 'explicit',
        why: `named in the request (${id}, running)`,
        vpcId: instance.VpcId,
      });
    }
  }
  if (result.targets.length === 0) {
    throw new NoCaptureTargetError(
      `none of the requested instances can be captured on: ${result.skipped.map((s) => s.detail).join('; ')}`,
      { skipped: result.skipped },
    );
  }
  return result;
}

async function taggedInstances(
  key: string,
  value: string,
  deps: TargetDeps,
): Promise<TargetResolution> {
  const instances = await describeInstances(deps.ec2, {
    Filters: [
      { Name: `tag:${key}`, Values: [value] },
      { Name: 'instance-state-name', Values: ['running'] },
    ],
  });
  if (instances.length === 0) {
    throw new NoCaptureTargetError(`no running instance is tagged ${key}=${value}`, { key, value });
  }
  return {
    targets: instances.map((i) => ({
      instanceId: i.InstanceId!,
      via: 'tag' as const,
      why: `tagged ${key}=${value} (running)`,
      vpcId: i.VpcId,
    })),
    skipped: [],
  };
}

async function findInterface(
  selector: Extract<TargetSelector, { kind: 'eni' | 'address' }>,
  deps: TargetDeps,
): Promise<NetworkInterface> {
  if (selector.kind === 'eni') {
    try {
      const out = await deps.ec2.send(
        new DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: [selector.eniId] }),
      );
      const eni = out.NetworkInterfaces?.[0];
      if (eni) return eni;
    } catch (error) {
      if (!(error as { name?: string }).name?.startsWith('InvalidNetworkInterfaceID')) throw error;
    }
    throw new NoCaptureTargetError(`network interface ${selector.eniId} does not exist`, {
      eniId: selector.eniId,
    });
  }
  const filterName =
    isIP(selector.address) === 6 ? 'ipv6-addresses.ipv6-address' : 'addresses.private-ip-address';
  const filters: Filter[] = [{ Name: filterName, Values: [selector.address] }];
  if (selector.vpcId) filters.push({ Name: 'vpc-id', Values: [selector.vpcId] });
  const out = await deps.ec2.send(new DescribeNetworkInterfacesCommand({ Filters: filters }));
  const enis = out.NetworkInterfaces ?? [];
  if (enis.length === 0) {
    throw new NoCaptureTargetError(
      `no network interface has the address ${selector.address}${selector.vpcId ? ` in ${selector.vpcId}` : ''}`,
      { address: selector.address, vpcId: selector.vpcId },
    );
  }
  if (enis.length > 1) {
    throw new InvalidCaptureRequestError(
      `the address ${selector.address} exists in several VPCs (${enis.map((e) => e.VpcId).join(', ')}); give targets.vpcId`,
      { fields: [{ field: 'targets.vpcId', problem: 'required: the address is ambiguous' }] },
    );
  }
  return enis[0]!;
}

async function routeTableFor(
  eni: NetworkInterface,
  deps: TargetDeps,
): Promise<{ table: RouteTable; how: string }> {
  const explicit = await deps.ec2.send(
    new DescribeRouteTablesCommand({
      Filters: [{ Name: 'association.subnet-id', Values: [eni.SubnetId!] }],
    }),
  );
  const table = explicit.RouteTables?.[0];
  if (table) return { table, how: `explicitly associated with ${eni.SubnetId}` };
  const main = await deps.ec2.send(
    new DescribeRouteTablesCommand({
      Filters: [
        { Name: 'vpc-id', Values: [eni.VpcId!] },
        { Name: 'association.main', Values: ['true'] },
      ],
    }),
  );
  const mainTable = main.RouteTables?.[0];
  if (!mainTable) {
    throw new NoCaptureTargetError(`VPC ${eni.VpcId} has no main route table`, {
      vpcId: eni.VpcId,
    });
  }
  return {
    table: mainTable,
    how: `the main table of ${eni.VpcId} (${eni.SubnetId} has no explicit association)`,
  };
}

/** The active route with the longest prefix that contains `peer`. */
export function longestPrefixRoute(routes: Route[], peer: string): Route | undefined {
  let best: { route: Route; prefix: number } | undefined;
  for (const route of routes) {
    if (route.State && route.State !== 'active') continue;
    const cidr = route.DestinationCidrBlock ?? route.DestinationIpv6CidrBlock;
    if (!cidr || !cidrContains(cidr, peer)) continue;
    const prefix = parseCidr(cidr)!.prefix;
    if (!best || prefix > best.prefix) best = { route, prefix };
  }
  return best?.route;
}

function describeRouteTarget(route: Route): string {
  return (
    route.InstanceId ??
    route.NetworkInterfaceId ??
    route.NatGatewayId ??
    route.GatewayId ??
    route.TransitGatewayId ??
    route.VpcPeeringConnectionId ??
    route.LocalGatewayId ??
    'an unknown target'
  );
}

async function viaRoute(
  eni: NetworkInterface,
  peer: string,
  deps: TargetDeps,
  notes: string[],
): Promise<ResolvedTarget | undefined> {
  const { table, how } = await routeTableFor(eni, deps);
  const route = longestPrefixRoute(table.Routes ?? [], peer);
  const dest = route?.DestinationCidrBlock ?? route?.DestinationIpv6CidrBlock;
  if (!route) {
    notes.push(`route table ${table.RouteTableId} (${how}) has no active route for ${peer}`);
    return undefined;
  }
  let instanceId = route.InstanceId;
  let through = '';
  if (!instanceId && route.NetworkInterfaceId) {
    const out = await deps.ec2.send(
      new DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: [route.NetworkInterfaceId] }),
    );
    instanceId = out.NetworkInterfaces?.[0]?.Attachment?.InstanceId;
    through = ` through ${route.NetworkInterfaceId}`;
  }
  if (!instanceId) {
    notes.push(
      `route table ${table.RouteTableId} (${how}) sends ${dest} to ${describeRouteTarget(route)}, which is not an instance Tapline can capture on`,
    );
    return undefined;
  }
  const [instance] = await describeInstances(deps.ec2, { InstanceIds: [instanceId] });
  if (instance?.State?.Name !== 'running') {
    notes.push(`route target ${instanceId} is ${instance?.State?.Name ?? 'missing'}`);
    return undefined;
  }
  return {
    instanceId,
    via: 'route',
    why: `route table ${table.RouteTableId} (${how}) sends ${dest} (longest prefix for ${peer}) to instance ${instanceId}${through}, which forwards the traffic of ${eni.NetworkInterfaceId}`,
    vpcId: eni.VpcId,
  };
}

async function fromInterface(
  selector: Extract<TargetSelector, { kind: 'eni' | 'address' }>,
  deps: TargetDeps,
): Promise<TargetResolution> {
  const eni = await findInterface(selector, deps);
  const notes: string[] = [];
  const captureTag = parseTag(deps.captureTag);
  const attached = eni.Attachment?.InstanceId;
  if (attached) {
    const [instance] = await describeInstances(deps.ec2, { InstanceIds: [attached] });
    if (instance && hasTag(instance, captureTag) && instance.State?.Name === 'running') {
      return {
        targets: [
          {
            instanceId: attached,
            via: 'self',
            why: `${eni.NetworkInterfaceId} belongs to ${attached}, which is tagged ${deps.captureTag}`,
            vpcId: eni.VpcId,
          },
        ],
        skipped: [],
      };
    }
    notes.push(
      `${attached} (owner of ${eni.NetworkInterfaceId}) is not a running host tagged ${deps.captureTag}`,
    );
  }
  const peer = selector.peerAddress ?? (isIP(eni.PrivateIpAddress ?? '') === 6 ? '::' : '0.0.0.0');
  const routed = await viaRoute(eni, peer, deps, notes);
  if (routed) return { targets: [routed], skipped: [] };
  const sensorTag = parseTag(deps.sensorTag);
  const sensors = await describeInstances(deps.ec2, {
    Filters: [
      { Name: 'vpc-id', Values: [eni.VpcId!] },
      { Name: `tag:${sensorTag.key}`, Values: [sensorTag.value] },
      { Name: 'instance-state-name', Values: ['running'] },
    ],
  });
  if (sensors.length > 0) {
    return {
      targets: sensors.map((s) => ({
        instanceId: s.InstanceId!,
        via: 'sensor' as const,
        why: `sensor tagged ${deps.sensorTag} in ${eni.VpcId} (${notes.join('; ')})`,
        vpcId: eni.VpcId,
      })),
      skipped: [],
    };
  }
  notes.push(`no running host tagged ${deps.sensorTag} in ${eni.VpcId}`);
  throw new NoCaptureTargetError(
    `no host can see the traffic of ${eni.NetworkInterfaceId}: ${notes.join('; ')}`,
    { eniId: eni.NetworkInterfaceId, vpcId: eni.VpcId, checked: notes },
  );
}

/** Resolves a selector to running instances, each with why it was chosen. */
export async function resolveTargets(
  selector: TargetSelector,
  deps: TargetDeps,
): Promise<TargetResolution> {
  switch (selector.kind) {
    case 'instances':
      return explicitInstances(selector.instanceIds, deps);
    case 'tag': {
      const fallback = parseTag(deps.captureTag);
      return taggedInstances(selector.key ?? fallback.key, selector.value ?? fallback.value, deps);
    }
    case 'eni':
    case 'address':
      return fromInterface(selector, deps);
  }
}
