/**
 * What the target-resolution tests resolve against: a capture world on moto, one NAT
 * topology in it (workload, NAT instance, sensor) and the resolver's deps for that world.
 */
import { beforeAll } from 'vitest';
import type { TargetDeps } from '../../shared/targets/resolve.ts';
import {
  type CaptureWorld,
  makeCaptureWorld,
  makeTopology,
  type Topology,
  targetDeps,
} from '../fixtures/capture/world.ts';

export interface ResolutionWorld {
  world: CaptureWorld;
  topo: Topology;
  deps: TargetDeps;
}

/**
 * Builds a resolution world (topology `10.<octet>.0.0/16`) once, before the tests of the
 * enclosing describe; read it through the returned object inside tests.
 */
export function useResolutionWorld(octet: number): ResolutionWorld {
  const at = {} as ResolutionWorld;
  beforeAll(async () => {
    at.world = await makeCaptureWorld();
    at.topo = await makeTopology(at.world, octet);
    at.deps = targetDeps(at.world);
  });
  return at;
}
