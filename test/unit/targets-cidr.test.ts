import type { Route } from '@aws-sdk/client-ec2';
import { describe, expect, it } from 'vitest';
import { cidrContains, parseCidr } from '../../shared/targets/cidr.ts';
import { longestPrefixRoute, parseTag } from '../../shared/targets/resolve.ts';

describe('CIDR arithmetic', () => {
  it('matches IPv4 and IPv6 prefixes, never across families', () => {
    expect(cidrContains('10.0.0.0/8', '10.200.3.4')).toBe(true);
    expect(cidrContains('10.0.0.0/8', '11.0.0.1')).toBe(false);
    expect(cidrContains('0.0.0.0/0', '203.0.113.9')).toBe(true);
    expect(cidrContains('192.0.2.0/31', '192.0.2.1')).toBe(true);
    expect(cidrContains('192.0.2.0/31', '192.0.2.2')).toBe(false);
    expect(cidrContains('2001:db8::/32', '2001:db8:ffff::1')).toBe(true);
    expect(cidrContains('2001:db8::/32', '2001:db9::1')).toBe(false);
    expect(cidrContains('::/0', '2001:db8::1')).toBe(true);
    expect(cidrContains('::/0', '10.0.0.1')).toBe(false);
    expect(cidrContains('0.0.0.0/0', '::1')).toBe(false);
    expect(cidrContains('::ffff:0:0/96', '::ffff:10.0.0.1')).toBe(true);
    expect(parseCidr('10.0.0.0/33')).toBeUndefined();
    expect(parseCidr('not-an-address')).toBeUndefined();
  });
});

describe('longestPrefixRoute', () => {
  const routes: Route[] = [
    { DestinationCidrBlock: '10.0.0.0/16', GatewayId: 'local', State: 'active' },
    { DestinationCidrBlock: '0.0.0.0/0', InstanceId: 'i-0nat', State: 'active' },
    { DestinationCidrBlock: '203.0.113.0/24', GatewayId: 'igw-1', State: 'active' },
    { DestinationCidrBlock: '198.51.100.0/24', NetworkInterfaceId: 'eni-1', State: 'blackhole' },
    { DestinationIpv6CidrBlock: '::/0', NetworkInterfaceId: 'eni-appliance', State: 'active' },
  ];

  it('picks the most specific active route containing the peer', () => {
    expect(longestPrefixRoute(routes, '203.0.113.9')?.GatewayId).toBe('igw-1');
    expect(longestPrefixRoute(routes, '8.8.8.8')?.InstanceId).toBe('i-0nat');
    expect(longestPrefixRoute(routes, '10.0.3.3')?.GatewayId).toBe('local');
    // A blackhole route is skipped: the default route applies.
    expect(longestPrefixRoute(routes, '198.51.100.7')?.InstanceId).toBe('i-0nat');
    expect(longestPrefixRoute(routes, '2001:db8::1')?.NetworkInterfaceId).toBe('eni-appliance');
    expect(longestPrefixRoute([], '1.1.1.1')).toBeUndefined();
  });
});

describe('parseTag', () => {
  it('splits key=value at the last =, defaulting the value to true', () => {
    expect(parseTag('tapline:capture=true')).toEqual({ key: 'tapline:capture', value: 'true' });
    expect(parseTag('team=a=b')).toEqual({ key: 'team=a', value: 'b' });
    expect(parseTag('sensor')).toEqual({ key: 'sensor', value: 'true' });
  });
});
